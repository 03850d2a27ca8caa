import { chmodSync, existsSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCsr, generateKeyPair, privateKeyToPem, systemClock } from '../core/index.ts';
import { registerDevice, writeSecret } from '../provisioning/index.ts';
import type { CertificateRecord } from '../registry/index.ts';
import { openDataDir } from './data-dir.ts';

export interface DeviceCreateOptions {
  readonly id: string;
  readonly out: string;
  readonly dataDir: string;
  readonly template?: string;
  /** Used for the CRL/OCSP URLs written into the certificate. */
  readonly apiBaseUrl: string;
}

export interface CreatedDevice {
  readonly id: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly files: { readonly certificate: string; readonly key: string; readonly ca: string };
}

const fileNames = { certificate: 'device.crt', key: 'device.key', ca: 'ca.crt' } as const;

/**
 * Manual registration for a lab or a handful of devices: a P-256 key made here, a CSR, a certificate from
 * the device CA in the data directory. Either all three files are written and the device is registered,
 * or nothing is: the key is written first (0600, never overwriting) and removed if registration fails.
 */
export async function createDevice(options: DeviceCreateOptions): Promise<CreatedDevice> {
  const files = { certificate: join(options.out, fileNames.certificate), key: join(options.out, fileNames.key), ca: join(options.out, fileNames.ca) };
  const existing = Object.values(files).filter((path) => existsSync(path));
  if (existing.length > 0) throw new Error(`${existing.join(', ')} already exist; choose an empty --out directory`);

  const dataDir = await openDataDir({ path: options.dataDir });
  try {
    const keys = await generateKeyPair();
    mkdirSync(options.out, { recursive: true });
    writeSecret(files.key, await privateKeyToPem(keys.privateKey));
    chmodSync(files.key, 0o600); // in case a umask or an odd filesystem widened it
    let record: CertificateRecord;
    try {
      record = await registerDevice(
        {
          registry: dataDir.registry,
          deviceCa: dataDir.pki.deviceCa,
          clock: systemClock,
          revocation: { crl: `${options.apiBaseUrl}/v1/pki/crl`, ocsp: `${options.apiBaseUrl}/v1/pki/ocsp` },
        },
        { id: options.id, csr: await createCsr(keys, options.id), actor: 'cli', ...(options.template ? { template: options.template } : {}) },
      );
    } catch (error) {
      unlinkSync(files.key);
      throw error;
    }
    writeFileSync(files.certificate, record.pem + dataDir.pki.pem.deviceCa, { mode: 0o644 });
    writeFileSync(files.ca, dataDir.pki.pem.root, { mode: 0o644 });
    return { id: options.id, serial: record.serial, notAfter: record.notAfter.toISOString(), files };
  } finally {
    await dataDir.registry.close();
  }
}
