import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backendPolicyName, createCsr, generateKeyPair, privateKeyToPem, systemClock } from '../core/index.ts';
import { registerDevice } from '../provisioning/index.ts';
import { openDataDir } from '../cli/data-dir.ts';

/** One identity as a load worker needs it: client id and PEM credential (leaf + device CA, key). */
export interface BenchIdentity {
  readonly id: string;
  readonly cert: string;
  readonly key: string;
}

export interface BenchCredentials {
  /** fleetgate's root CA: both brokers' server certificate chains to it. */
  readonly ca: string;
  readonly devices: readonly BenchIdentity[];
  /** The wildcard subscriber: a service identity (policy `backend`; a `topic read devices/#` user in Mosquitto). */
  readonly service: BenchIdentity;
  readonly pki: { readonly cafile: string; readonly certfile: string; readonly keyfile: string };
  /** The admin token of the data directory. */
  readonly token: string;
}

/**
 * Creates the data directory and registers `count` devices and one service the way `fleetgate device create`
 * and `fleetgate service create` do (same use-case, `registerDevice`, in this process before the gateway
 * starts: much faster than one CLI process per device). The same certificates are used against both brokers.
 * Written to `<dataDir>/bench-credentials.json` so that load workers (child processes) can read them.
 */
export async function createBenchCredentials(options: { dataDir: string; count: number; prefix: string; serviceName: string; onProgress?: (done: number) => void }): Promise<{ file: string; credentials: BenchCredentials }> {
  const file = join(options.dataDir, 'bench-credentials.json');
  if (existsSync(file)) {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as BenchCredentials;
    if (cached.devices.length >= options.count) return { file, credentials: cached };
  }
  const dataDir = await openDataDir({ path: options.dataDir, hostnames: ['localhost'] });
  try {
    const deps = { registry: dataDir.registry, authorities: dataDir.authorities, clock: systemClock };
    const chain = dataDir.pki.pem.deviceCa;
    const make = async (id: string, kind: 'device' | 'service'): Promise<BenchIdentity> => {
      const keys = await generateKeyPair();
      const record = await registerDevice(deps, { id, kind, csr: await createCsr(keys, id), actor: 'bench', ...(kind === 'service' ? { policy: backendPolicyName } : {}) });
      return { id, cert: record.pem + chain, key: await privateKeyToPem(keys.privateKey) };
    };
    const service = await make(options.serviceName, 'service');
    const devices: BenchIdentity[] = [];
    // Key generation and signing run on the libuv pool; a few in flight keep it busy without flooding SQLite.
    const ids = Array.from({ length: options.count }, (_, i) => `${options.prefix}${String(i).padStart(5, '0')}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < ids.length) {
          const id = ids[next++] as string;
          devices.push(await make(id, 'device'));
          if (devices.length % 1000 === 0) options.onProgress?.(devices.length);
        }
      }),
    );
    devices.sort((a, b) => a.id.localeCompare(b.id));
    const pkiDir = join(options.dataDir, 'pki');
    const credentials: BenchCredentials = {
      ca: dataDir.pki.pem.root,
      devices,
      service,
      pki: { cafile: join(pkiDir, 'ca.crt'), certfile: join(pkiDir, 'server.crt'), keyfile: join(pkiDir, 'server.key') },
      token: dataDir.adminToken,
    };
    writeFileSync(file, JSON.stringify(credentials), { mode: 0o600 });
    return { file, credentials };
  } finally {
    await dataDir.registry.close();
  }
}
