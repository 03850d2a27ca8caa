import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BrokerUnderTest, freePort, launchPrefix, type Pinning, startChildBroker } from './broker-under-test.ts';

export const mosquittoPath = '/usr/sbin/mosquitto';

/** The Debian package's binary, or a message that says how to get it. */
export function findMosquitto(): { path: string; version: string } | { missing: string } {
  const path = existsSync(mosquittoPath) ? mosquittoPath : undefined;
  if (path === undefined) return { missing: `Mosquitto is not installed (${mosquittoPath}). Install the Debian package: apt-get install mosquitto` };
  let banner: string;
  try {
    banner = execFileSync(path, ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    // `mosquitto -h` exits 3 after printing its usage.
    banner = String((error as { stdout?: unknown }).stdout ?? '');
  }
  return { path, version: /mosquitto version (\S+)/.exec(banner)?.[1] ?? 'unknown' };
}

export interface MosquittoTls {
  /** Trust anchors for client certificates: fleetgate's root CA (device certificates carry their intermediate). */
  readonly cafile: string;
  /** fleetgate's own server certificate and key: both brokers present the same identity. */
  readonly certfile: string;
  readonly keyfile: string;
}

/**
 * The configuration the issue prescribes, equivalent to fleetgate's defaults: TLS 1.2 or later with a client
 * certificate required, the certificate's CN as the username, each device confined to `devices/<CN>/#`,
 * and the backend service allowed to read `devices/#` (fleetgate's `backend` policy).
 */
export function mosquittoConfig(options: { port: number; tls: MosquittoTls; aclFile: string; runAsRoot: boolean }): string {
  return [
    '# written by bench/run.ts for one benchmark run',
    ...(options.runAsRoot ? ['user root'] : []),
    'per_listener_settings false',
    'persistence false',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'max_connections -1',
    // fleetgate sets TCP_NODELAY on its sockets (broker/mqtt-listener.ts); Mosquitto does not by default, and
    // Nagle's algorithm then holds its small QoS 1 PUBLISHes to the subscriber until an ACK (~2.6k msg/s).
    'set_tcp_nodelay true',
    `listener ${options.port} 127.0.0.1`,
    `cafile ${options.tls.cafile}`,
    `certfile ${options.tls.certfile}`,
    `keyfile ${options.tls.keyfile}`,
    'tls_version tlsv1.2',
    'require_certificate true',
    'use_identity_as_username true',
    'allow_anonymous false',
    `acl_file ${options.aclFile}`,
    '',
  ].join('\n');
}

export function mosquittoAcl(serviceNames: readonly string[]): string {
  return ['pattern readwrite devices/%u/#', '', ...serviceNames.flatMap((name) => [`user ${name}`, 'topic read devices/#', '']), ''].join('\n');
}

/** A private Mosquitto on a free 127.0.0.1 port (never the system one on :1883), in its own temp config. */
export async function startMosquitto(options: { dir: string; tls: MosquittoTls; serviceNames: readonly string[]; pinning: Pinning }): Promise<BrokerUnderTest> {
  const found = findMosquitto();
  if ('missing' in found) throw new Error(found.missing);
  mkdirSync(options.dir, { recursive: true });
  const port = await freePort();
  const aclFile = join(options.dir, 'acl');
  const configFile = join(options.dir, 'mosquitto.conf');
  writeFileSync(aclFile, mosquittoAcl(options.serviceNames));
  writeFileSync(configFile, mosquittoConfig({ port, tls: options.tls, aclFile, runAsRoot: process.getuid?.() === 0 }));
  return startChildBroker({ name: 'mosquitto', kind: 'mosquitto', port, argv: [...launchPrefix(options.pinning), found.path, '-c', configFile], startTimeoutMs: 10_000 });
}
