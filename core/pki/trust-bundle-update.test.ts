import { describe, expect, it } from 'vitest';
import { fixedClock, systemClock } from '../clock.ts';
import { createIssuingCa, createRootCa, crossCertify } from './certificate-authority.ts';
import { ecdsaSha256 } from './keys.ts';
import { rootsToTrust } from './trust-bundle-update.ts';
import { x509 } from './x509.ts';

const pem = (certificate: x509.X509Certificate) => certificate.toString('pem') + '\n';

describe('rootsToTrust: what a device keeps from a trust bundle', () => {
  it('keeps a new root the bundle cross-signs with a root the device trusts, and the roots it knew', async () => {
    const oldRoot = await createRootCa({ commonName: 'old root', clock: systemClock });
    const newRoot = await createRootCa({ commonName: 'new root', clock: systemClock });
    const cross = await crossCertify({ subject: newRoot.certificate, issuer: oldRoot, clock: systemClock });
    const kept = await rootsToTrust([pem(oldRoot.certificate)], pem(oldRoot.certificate) + pem(newRoot.certificate) + pem(cross), new Date());
    expect(kept).toEqual([pem(oldRoot.certificate), pem(newRoot.certificate)]);
    // Once the old root is retired the bundle lists only the new one, which the device now holds.
    expect(await rootsToTrust(kept, pem(newRoot.certificate), new Date())).toEqual([pem(newRoot.certificate)]);
  });

  it('refuses an issuing CA self-signed as a root by whoever stole its key, even with its real certificate as the "cross"', async () => {
    const root = await createRootCa({ commonName: 'root', clock: systemClock });
    const deviceCa = await createIssuingCa({ issuer: root, commonName: 'device CA', clock: systemClock });
    const forgedRoot = await x509.X509CertificateGenerator.create({
      serialNumber: '01',
      subject: deviceCa.certificate.subjectName,
      issuer: deviceCa.certificate.subjectName,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 100 * 365 * 24 * 3600_000),
      signingAlgorithm: ecdsaSha256,
      publicKey: deviceCa.certificate.publicKey,
      signingKey: deviceCa.privateKey,
      extensions: [new x509.BasicConstraintsExtension(true, 1, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
    });
    // The issuing CA's own certificate has the forged root's subject and key, and the real root signed it.
    const kept = await rootsToTrust([pem(root.certificate)], pem(forgedRoot) + pem(deviceCa.certificate), new Date());
    expect(kept).toEqual([pem(root.certificate)]);
  });

  it('refuses a cross-certificate that has expired, and a bundle that names none of its roots changes nothing', async () => {
    const oldRoot = await createRootCa({ commonName: 'old root', clock: systemClock });
    const newRoot = await createRootCa({ commonName: 'new root', clock: systemClock });
    const staleCross = await crossCertify({ subject: newRoot.certificate, issuer: oldRoot, clock: fixedClock(new Date(Date.now() - 30 * 365 * 24 * 3600_000)) });
    const later = new Date(staleCross.notAfter.getTime() + 1000);
    expect(await rootsToTrust([pem(oldRoot.certificate)], pem(newRoot.certificate) + pem(staleCross), later)).toEqual([pem(oldRoot.certificate)]);
    const stranger = await createRootCa({ commonName: 'stranger', clock: systemClock });
    expect(await rootsToTrust([pem(oldRoot.certificate)], pem(stranger.certificate), new Date())).toEqual([pem(oldRoot.certificate)]);
  });
});
