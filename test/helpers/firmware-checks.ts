import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { TestGateway } from './test-gateway.ts';

/**
 * What the gateway must have recorded after a firmware sample enrolled, renewed and reconnected, and what
 * the device must hold: the same for every sample, whatever its language.
 */
export async function expectEnrolledAndRenewed(gw: TestGateway, serial: string, stateDir: string): Promise<void> {
  const { registry } = gw.gateway.dataDir;
  expect(await registry.getDevice(serial)).toMatchObject({ status: 'active', kind: 'device' });
  await gw.waitForAudit({ deviceId: serial, action: 'device.enroll', result: 'ok' });
  await gw.waitForAudit({ deviceId: serial, action: 'device.renew', result: 'ok' });
  await gw.waitForAudit({ deviceId: serial, action: 'certificate.supersede', result: 'ok' });

  // The enrolled certificate was superseded by the renewed one, which is what the device now holds.
  const certificates = await registry.listCertificates(serial);
  expect(certificates).toHaveLength(2);
  const active = certificates.filter((c) => c.status === 'active');
  const superseded = certificates.filter((c) => c.status === 'superseded');
  expect(active).toHaveLength(1);
  expect(superseded).toHaveLength(1);
  expect(active[0]?.replaces).toBe(superseded[0]?.serial);
  const held = new X509Certificate(readFileSync(join(stateDir, 'device.crt')));
  expect(held.serialNumber).toBe(new X509Certificate(active[0]?.pem ?? '').serialNumber);
  expect(held.subject).toBe(`CN=${serial}`);

  // The key stays private on the device; no renewal key is left behind.
  expect(statSync(join(stateDir, 'device.key')).mode & 0o777).toBe(0o600);
  expect(() => statSync(join(stateDir, 'renew.key'))).toThrow();
}
