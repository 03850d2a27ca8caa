import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import { createCsr, dayMs, generateKeyPair, privateKeyToPem, systemClock } from '../../core/index.ts';
import { registerDevice } from '../../provisioning/index.ts';
import { registerService } from '../../provisioning/register-service.ts';
import { openDataDir } from '../../cli/data-dir.ts';
import { issueClaimCertificate, type ClientCredential } from './test-gateway.ts';
import { encodeConnect, encodeSubscribe } from '../../bench/mqtt-wire.ts';

/**
 * Identities for load tests against a gateway in a child process: created in-process on the data directory
 * first (registry + CA), then the directory is closed and handed to `fleetgate serve`.
 */
export interface FloodIdentities {
  readonly ca: string;
  readonly adminToken: string;
  readonly devices: Record<string, ClientCredential>;
  readonly services: Record<string, ClientCredential>;
  readonly claim: ClientCredential | undefined;
}

export async function prepareIdentities(dataDir: string, options: { devices?: string[]; services?: string[]; claim?: boolean }): Promise<FloodIdentities> {
  const dir = await openDataDir({ path: dataDir, hostnames: ['localhost'] });
  const { pki, registry } = dir;
  const deps = { registry, authorities: dir.authorities, clock: systemClock };
  const issue = async (id: string, kind: 'device' | 'service') => {
    const keys = await generateKeyPair();
    const csr = await createCsr(keys, id);
    const record = kind === 'device' ? await registerDevice(deps, { id, csr, actor: 'test' }) : await registerService(deps, { name: id, csr, actor: 'test' });
    return { key: await privateKeyToPem(keys.privateKey), cert: record.pem + pki.pem.deviceCa };
  };
  const devices: Record<string, ClientCredential> = {};
  const services: Record<string, ClientCredential> = {};
  for (const id of options.devices ?? []) devices[id] = await issue(id, 'device');
  for (const id of options.services ?? []) services[id] = await issue(id, 'service');
  let claim: ClientCredential | undefined;
  if (options.claim) {
    const expiresAt = new Date(Date.now() + 30 * dayMs);
    const issued = await issueClaimCertificate(pki.claimCa, 'storm', expiresAt);
    await registry.createClaim({ id: 'storm', template: 'default', certificateSerial: issued.serial, maxUses: null, expiresAt }, { actor: 'test', action: 'claim.create', result: 'ok' });
    claim = { key: issued.key, cert: issued.cert + pki.pem.claimCa };
  }
  const result = { ca: pki.pem.root, adminToken: dir.adminToken, devices, services, claim };
  await registry.close();
  return result;
}

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}

/** Sum of a Prometheus counter over all label sets matching `labels` (e.g. `code="X"`). */
export function counterValue(metricsText: string, name: string, labels = ''): number {
  let total = 0;
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (labels !== '' && !line.includes(labels)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

export function mqttOptions(port: number, ca: string, clientId: string, credential: ClientCredential) {
  return { host: '127.0.0.1', port, protocol: 'mqtts' as const, clientId, protocolVersion: 4 as const, ca, key: credential.key, cert: credential.cert, servername: 'localhost', rejectUnauthorized: true, reconnectPeriod: 0, connectTimeout: 10_000 };
}

export function connectDevice(port: number, ca: string, clientId: string, credential: ClientCredential): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, mqttOptions(port, ca, clientId, credential), false);
}

/**
 * A subscriber that stops reading: CONNECT + SUBSCRIBE on a raw TLS socket, then the socket is paused, so
 * everything the gateway sends it piles up in the gateway (the worst case for outbound queues).
 */
export async function stalledSubscriber(port: number, ca: string, clientId: string, credential: ClientCredential, filter: string, qos: 0 | 1): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca, key: credential.key, cert: credential.cert, servername: 'localhost' });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  socket.write(encodeConnect(clientId, 0));
  socket.write(encodeSubscribe(1, filter, qos));
  // Wait for CONNACK and SUBACK (4 + 5 bytes) before going quiet.
  let received = 0;
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received >= 9) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  socket.pause();
  return socket;
}
