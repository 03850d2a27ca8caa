import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type Clock, createIssuingCa, createRootCa, systemClock } from '../../core/index.ts';
import { initialKeyFiles, openCertificateAuthorities } from '../../provisioning/index.ts';
import { openSqliteRegistry, type Registry, seedDefaults } from '../../registry/index.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * Two provisioning processes on one registry and one pki/ (README "Rotating certificates and CAs"): one
 * rotates, the other never hears of it (its trust.changed was lost) and still signs with the CA now active.
 */
const dir = makeTempDir();
let registry: Registry | undefined;
afterEach(async () => {
  await registry?.close();
});
afterAll(() => dir.remove());

describe('the CA set across processes', () => {
  it('moves to the CA another process activated within seconds, without any event; new keys are 0600', async () => {
    registry = await openSqliteRegistry({ path: join(dir.path, 'fleetgate.db') });
    await seedDefaults(registry);
    const root = await createRootCa({ commonName: 'two-process root', clock: systemClock });
    const initial = { root, deviceCa: await createIssuingCa({ issuer: root, commonName: 'first device CA', clock: systemClock }), claimCa: await createIssuingCa({ issuer: root, commonName: 'first claim CA', clock: systemClock }) };
    let now = Date.now();
    const clock: Clock = { now: () => new Date(now) };
    const open = () => openCertificateAuthorities({ registry: registry!, pkiDir: dir.path, initial, initialKeyFiles, clock, renewServerCertificate: async () => {} });
    const first = await open();
    const second = await open();
    const before = (await second.issuer('device')).id;

    await first.rotate('device', 'prepare', 'operator:test');
    const activated = await first.rotate('device', 'activate', 'operator:test');
    expect(activated.ca.id).not.toBe(before);
    expect(statSync(join(dir.path, activated.ca.keyRef!)).mode & 0o777).toBe(0o600);

    expect((await second.issuer('device')).id).toBe(before); // within the freshness window: as last read
    now += 6_000;
    const moved = await second.issuer('device');
    expect(moved.id).toBe(activated.ca.id);
    expect(moved.credential.certificate.subject).toContain('G2');
  });
});
