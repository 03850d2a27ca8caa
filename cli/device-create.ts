import { chmodSync, existsSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CreateDevice, CreatedDevice as CreatedDeviceAnswer } from '../contract/index.ts';
import { createCsr, generateKeyPair, privateKeyToPem } from '../core/index.ts';
import { writeSecret } from '../provisioning/pki-store.ts';
import type { ApiClientOptions } from './api-client.ts';
import { callApi } from './operator-context.ts';

export interface DeviceCreateOptions {
  readonly id: string;
  readonly out: string;
  readonly template?: string;
  readonly policy?: string;
  readonly attributes?: Readonly<Record<string, string>>;
}

export interface CreatedDevice {
  readonly id: string;
  readonly template: string;
  readonly policy: string | null;
  readonly serial: string;
  readonly notAfter: string;
  readonly files: { readonly certificate: string; readonly key: string; readonly ca: string };
}

const fileNames = { certificate: 'device.crt', key: 'device.key', ca: 'ca.crt' } as const;

/**
 * Manual registration for a lab or a handful of devices: a P-256 key made here, a CSR, and the certificate
 * from the API (`POST /v1/devices`), so it lands in the deployment's registry, whatever that is (SQLite,
 * PostgreSQL, a cluster), audited under the caller's token. Either all three files are written and the device
 * is registered, or nothing is: the key is written first (0600, never overwriting) and removed if the API
 * refuses.
 */
export async function createDevice(client: ApiClientOptions, options: DeviceCreateOptions): Promise<CreatedDevice> {
  const files = { certificate: join(options.out, fileNames.certificate), key: join(options.out, fileNames.key), ca: join(options.out, fileNames.ca) };
  const existing = Object.values(files).filter((path) => existsSync(path));
  if (existing.length > 0) throw new Error(`${existing.join(', ')} already exist; choose an empty --out directory`);

  const keys = await generateKeyPair();
  mkdirSync(options.out, { recursive: true });
  writeSecret(files.key, await privateKeyToPem(keys.privateKey));
  chmodSync(files.key, 0o600); // in case a umask or an odd filesystem widened it
  let created: CreatedDeviceAnswer;
  try {
    created = await callApi(client, 'POST', '/v1/devices', {
      id: options.id,
      csr: await createCsr(keys, options.id),
      ...(options.template ? { template: options.template } : {}),
      ...(options.policy ? { policy: options.policy } : {}),
      ...(options.attributes && Object.keys(options.attributes).length > 0 ? { attributes: options.attributes } : {}),
    } satisfies CreateDevice);
  } catch (error) {
    unlinkSync(files.key);
    throw error;
  }
  writeFileSync(files.certificate, created.certificate + created.chain, { mode: 0o644 });
  writeFileSync(files.ca, created.ca, { mode: 0o644 });
  return { id: created.id, template: created.template, policy: created.policy, serial: created.serial, notAfter: created.notAfter, files };
}

/** `--attribute site=lab --attribute floor=2` as a record; a value may contain `=`. */
export function parseAttributes(pairs: readonly string[] | undefined): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const at = pair.indexOf('=');
    if (at < 1) throw new Error(`--attribute must be NAME=VALUE, got "${pair}"`);
    attributes[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return attributes;
}
