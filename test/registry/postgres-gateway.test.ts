import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dayMs, fixedClock } from '../../core/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { databaseUrlVia, startPostgresProxy, testSchemas } from '../helpers/postgres.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The all-in-one gateway with FLEETGATE_DATABASE_URL: the registry in PostgreSQL (through a TCP proxy the
 * test can cut), the PKI in the data directory. What SQLite guarantees must hold over the wire too.
 */
const schemas = testSchemas();
const schema = schemas.fresh();
let proxy: Awaited<ReturnType<typeof startPostgresProxy>>;
let gw: TestGateway;

beforeAll(async () => {
  proxy = await startPostgresProxy();
  gw = await startTestGateway({ FLEETGATE_DATABASE_URL: databaseUrlVia(proxy.port, schema) });
});

afterAll(async () => {
  await gw?.close();
  await proxy?.close();
  await schemas.dropAll();
});

describe('gateway on a PostgreSQL registry', () => {
  it('keeps its registry in PostgreSQL, seeded with the default policies and template', async () => {
    const db = await schemas.connect(schema);
    expect((await db.query('SELECT name FROM templates')).rows).toEqual([{ name: 'default' }]);
    expect((await db.query('SELECT name FROM policies ORDER BY name')).rows).toEqual([{ name: 'backend' }, { name: 'default' }]);
  });

  it('never exceeds max-uses when enrollments race for the last uses', async () => {
    const claim = await gw.issueClaim({ maxUses: 3 });
    const requests = await Promise.all(Array.from({ length: 12 }, async (_, i) => ({ csr: (await deviceKeyAndCsr(`sn-pg-race-${i}`)).csr })));
    const results = await Promise.all(requests.map((body) => gw.api<{ code?: string }>('POST', '/v1/enroll', { body, credential: claim })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(3);
    expect(results.filter((r) => r.status !== 201).every((r) => r.body.code === 'ENROLL_CLAIM_EXHAUSTED')).toBe(true);
    expect((await gw.gateway.dataDir.registry.getClaim(claim.claimId))?.uses).toBe(3);
    expect(await gw.gateway.dataDir.registry.listDevices({ prefix: 'sn-pg-race-' })).toHaveLength(3);
    expect(await gw.gateway.dataDir.registry.verifyAudit()).toMatchObject({ ok: true });
  });

  it('renews an expired certificate once within its template grace, when renewals race (README "Renewal after expiry")', async () => {
    expect(await gw.api('POST', '/v1/templates', { body: { name: 'pg-revivable', validityDays: 30, renewAfterExpiryDays: 30 }, token: true })).toMatchObject({ status: 201, body: { renewAfterExpiryDays: 30 } });
    const expired = await gw.createDevice('pg-expired', { template: 'pg-revivable', clock: fixedClock(new Date(Date.now() - 40 * dayMs)) });
    const requests = await Promise.all(Array.from({ length: 4 }, async () => ({ csr: (await deviceKeyAndCsr('pg-expired')).csr })));
    const results = await Promise.all(requests.map((body) => gw.api<{ code?: string }>('POST', '/v1/renew', { body, credential: expired })));
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
    expect(results.filter((r) => r.status === 409).every((r) => r.body.code === 'RENEW_EXPIRED_ALREADY_RENEWED')).toBe(true);
    expect(await gw.gateway.dataDir.registry.listCertificates('pg-expired')).toHaveLength(2);
  });

  it('refuses new sessions while PostgreSQL is unreachable (fail closed) and admits them again once it is back', async () => {
    const device = await gw.createDevice('pg-sensor-1');
    (await gw.connect('pg-sensor-1', device)).end(true);

    await proxy.stop();
    const refused = await gw.connect('pg-sensor-1', device).then(
      (client) => {
        client.end(true);
        return undefined;
      },
      (error: unknown) => error,
    );
    // CONNACK 3: server unavailable, retry later.
    expect(refused).toMatchObject({ code: 3 });

    await proxy.start();
    let admitted = false;
    for (let attempt = 0; attempt < 50 && !admitted; attempt += 1) {
      try {
        (await gw.connect('pg-sensor-1', device)).end(true);
        admitted = true;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect(admitted).toBe(true);
  });
});
