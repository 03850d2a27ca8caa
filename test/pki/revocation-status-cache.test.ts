import { afterEach, describe, expect, it } from 'vitest';
import { createCsr, createIssuingCa, createRootCa, generateKeyPair, systemClock, x509 } from '../../core/index.ts';
import { createRevocationStatus, registerDevice } from '../../provisioning/index.ts';
import { openSqliteRegistry, type Registry, seedDefaults } from '../../registry/index.ts';
import { authoritiesFor } from '../helpers/certificate-authorities.ts';

/**
 * The CRL cache never outlives a status change: a CRL whose build read the registry before a revocation
 * is not kept as current, even when the build finishes after the revocation was announced.
 */
let registry: Registry | undefined;
afterEach(async () => {
  await registry?.close();
});

describe('revocation status cache', () => {
  it('does not keep a CRL built from registry rows read before a revocation', async () => {
    const real = await openSqliteRegistry({ path: ':memory:' });
    registry = real;
    await seedDefaults(real);
    const root = await createRootCa({ commonName: 'cache test root', clock: systemClock });
    const deviceCa = await createIssuingCa({ issuer: root, commonName: 'cache test device CA', clock: systemClock });
    const claimCa = await createIssuingCa({ issuer: root, commonName: 'cache test claim CA', clock: systemClock });
    const authorities = await authoritiesFor(real, { root, deviceCa, claimCa });
    const issued = await registerDevice({ registry: real, authorities, clock: systemClock }, { id: 'cache-1', csr: await createCsr(await generateKeyPair(), 'cache-1'), actor: 'test' });

    // The first CRL build reads the registry, then waits (as a slow signing or database would) until released.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let reads = 0;
    const slowOnce: Registry = Object.create(real, {
      listRevokedCertificates: {
        value: async (now: Date) => {
          const rows = await real.listRevokedCertificates(now);
          if (reads++ === 0) await gate;
          return rows;
        },
      },
    }) as Registry;
    const status = createRevocationStatus({ registry: slowOnce, authorities, clock: systemClock });

    const early = status.crl();
    await real.setDeviceStatus({ id: 'cache-1', status: 'revoked', reason: 'keyCompromise', audit: { actor: 'test', action: 'device.revoke', result: 'ok' } });
    status.invalidate();
    const afterRevocation = status.crl();
    release();

    const serials = async (crl: Promise<{ der: ArrayBuffer }>) => new x509.X509Crl((await crl).der).entries.map((entry) => entry.serialNumber.toLowerCase());
    expect(await serials(early)).toEqual([]); // asked before the revocation: may not list it
    expect(await serials(afterRevocation)).toEqual([issued.serial]);
    expect(await serials(status.crl())).toEqual([issued.serial]); // and the cached one lists it too
  });
});
