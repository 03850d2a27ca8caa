import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CaCredential, IssuedCertificate } from '../../core/index.ts';
import { createIssuingCa, createRootCa, fixedClock, generateKeyPair, issueCertificate } from '../../core/index.ts';

/** When the throwaway PKI is made; `openssl verify -attime` checks at this time, not at the wall clock. */
export const issuedAt = new Date('2026-11-01T00:00:00Z');

export interface RevocationPki {
  readonly root: CaCredential;
  readonly deviceCa: CaCredential;
  /** Two device certificates of the device CA: tests revoke `revoked` and leave `good` alone. */
  readonly good: IssuedCertificate;
  readonly revoked: IssuedCertificate;
  /** PEM files in `dir`: chain.pem (root + device CA), deviceca.pem, good.pem, revoked.pem. */
  readonly files: { readonly chain: string; readonly deviceCa: string; readonly good: string; readonly revoked: string };
}

/** Root → device CA → two device certificates, as `fleetgate init` and enrollment would make them. */
export async function createRevocationPki(dir: string): Promise<RevocationPki> {
  const clock = fixedClock(issuedAt);
  const root = await createRootCa({ commonName: 'fleetgate test root', clock });
  const deviceCa = await createIssuingCa({ issuer: root, commonName: 'fleetgate test device CA', clock });
  const revocation = { crl: 'https://localhost:8443/v1/pki/crl', ocsp: 'https://localhost:8443/v1/pki/ocsp' };
  const device = async (deviceId: string) =>
    issueCertificate({ issuer: deviceCa, publicKey: (await generateKeyPair()).publicKey, profile: { kind: 'device', deviceId, validityDays: 365, revocation }, clock });
  const good = await device('sensor-good');
  const revoked = await device('sensor-revoked');

  const pem = (credential: CaCredential) => credential.certificate.toString('pem') + '\n';
  const files = { chain: join(dir, 'chain.pem'), deviceCa: join(dir, 'deviceca.pem'), good: join(dir, 'good.pem'), revoked: join(dir, 'revoked.pem') };
  writeFileSync(files.chain, pem(root) + pem(deviceCa));
  writeFileSync(files.deviceCa, pem(deviceCa));
  writeFileSync(files.good, good.pem);
  writeFileSync(files.revoked, revoked.pem);
  return { root, deviceCa, good, revoked, files };
}
