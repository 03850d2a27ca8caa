import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { defaultDevicePolicy, fixedClock, FleetgateError, systemClock } from '../../core/index.ts';
import { type AuditInput, openPostgresRegistry, openRegistry, type Registry, seedDefaults } from '../../registry/index.ts';
import type { PoolClient } from 'pg';
import { steps } from '../../registry/postgres/schema-steps.ts';
import { expectUpgraded, legacyAt as at, legacyAuditRows } from './fixtures/legacy-data.ts';
import { migratePostgres as legacyMigrate, postgresMigrations as legacyMigrations } from './fixtures/legacy-runners.ts';
import { databaseUrlVia, startPostgresProxy, testDatabaseUrl, testSchemas } from '../helpers/postgres.ts';
import { expectClaimRaceHeld } from './fixtures/claim-race.ts';
import { describeRegistryContract } from './registry-contract.ts';

const schemas = testSchemas();

afterAll(async () => {
  await schemas.dropAll();
});

// A fresh schema per test: the contract wants an empty registry each time.
describeRegistryContract('postgres', () => openPostgresRegistry({ url: testDatabaseUrl, schema: schemas.fresh() }));

describe('postgres registry', () => {
  const opened: Registry[] = [];

  async function open(schema: string, options: { clock?: ReturnType<typeof fixedClock>; url?: string } = {}): Promise<Registry> {
    const registry = await openPostgresRegistry({ url: options.url ?? testDatabaseUrl, schema, clock: options.clock ?? systemClock });
    opened.push(registry);
    return registry;
  }

  afterEach(async () => {
    for (const registry of opened.splice(0)) await registry.close();
  });

  const audit = (action: string, overrides: Partial<AuditInput> = {}): AuditInput => ({ actor: 'test', action, result: 'ok', ...overrides });

  function certificate(n: number) {
    return {
      serial: `7a${n.toString(16).padStart(4, '0')}`,
      fingerprint: `f1${n}`,
      publicKeyHash: `e5${n}`,
      notBefore: new Date('2025-01-01T00:00:00.000Z'),
      notAfter: new Date('2030-01-01T00:00:00.000Z'),
      pem: `pem-${n}`,
    };
  }

  it('creates its schema, keeps its data when reopened and does not run migrations again', async () => {
    const schema = schemas.fresh();
    const first = await open(schema, { clock: fixedClock('2025-01-01T00:00:00.000Z') });
    await seedDefaults(first);
    await first.registerCertificate({ device: { id: 'sensor-1', kind: 'device', template: 'default' }, certificate: certificate(1), mustBeNew: true, audit: audit('device.register') });
    await first.close();

    const second = await open(schema, { clock: fixedClock('2026-06-01T00:00:00.000Z') });
    expect(await second.getDevice('sensor-1')).toMatchObject({ status: 'active', createdAt: new Date('2025-01-01T00:00:00.000Z') });
    expect(await second.queryAudit()).toHaveLength(4);
    expect(await second.verifyAudit()).toMatchObject({ ok: true, entries: 4 });

    const db = await schemas.connect(schema);
    const applied = async () => (await db.query<{ name: string; timestamp: string }>('SELECT name, timestamp FROM kysely_migration ORDER BY name')).rows;
    const afterSecond = await applied();
    expect(afterSecond.map((row) => row.name)).toEqual(steps.map((step) => step.name));
    // Applied once: opening again runs nothing and records nothing.
    await (await open(schema)).close();
    expect(await applied()).toEqual(afterSecond);
  });

  it('upgrades in place a schema made by the migration runner before Kysely, and older fleetgates then refuse it', async () => {
    const schema = schemas.fresh();
    const db = await schemas.connect(schema);
    await legacyMigrate(db as unknown as PoolClient, schema, fixedClock('2024-05-06T07:08:09.010Z'));
    await db.query(`SET search_path TO "${schema}"`);
    await db.query(`
      INSERT INTO policies VALUES ('default', '{"statements":[]}', 1, '${at}');
      INSERT INTO templates VALUES ('default', 'default', 365, '["EC P-256"]', false, false, '{}', '${at}', '${at}');
      INSERT INTO claims (id, template, certificate_serial, max_uses, uses, expires_at, status, created_at) VALUES ('batch', 'default', 'c1', 5, 1, '2030-01-01T00:00:00.000Z', 'active', '${at}');
      INSERT INTO devices (id, kind, status, template, policy, attributes, status_reason, created_at, updated_at, reported_attributes)
        VALUES ('sn-1', 'device', 'active', 'default', NULL, '{}', NULL, '${at}', '${at}', '{"fw":"1.0"}');
      INSERT INTO certificates (serial, device_id, fingerprint, public_key_hash, not_before, not_after, status, pem, issued_at)
        VALUES ('0a', 'sn-1', 'f1', 'k1', '${at}', '2026-01-01T00:00:00.000Z', 'active', 'pem', '${at}');
    `);
    for (const row of legacyAuditRows()) {
      const values = [row.id, row.at, row.actor, row.action, row.result, row.code, row.deviceId, row.detail, row.prevHash, row.hash];
      await db.query('INSERT INTO audit_log (id, at, actor, action, result, code, device_id, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', values);
      await db.query('UPDATE audit_sequence SET last_id = $1', [row.id]);
    }

    await expectUpgraded(await open(schema));

    // The old runner's versions are recorded as Kysely's steps, at the time the old runner applied them.
    expect((await db.query('SELECT name, timestamp FROM kysely_migration ORDER BY name')).rows).toEqual(
      steps.map((step, index) => ({ name: step.name, timestamp: index < 3 ? '2024-05-06T07:08:09.010Z' : expect.any(String) })),
    );
    await expect(legacyMigrate(db as unknown as PoolClient, schema, systemClock)).rejects.toMatchObject({ code: 'CONFIG_INVALID', detail: { databaseVersion: 4, supportedVersion: 3 } });
  });

  it('moves attributes that devices reported before the trusted/reported split out of the policy-visible column', async () => {
    const schema = schemas.fresh();
    const db = await schemas.connect(schema);
    await legacyMigrate(db as unknown as PoolClient, schema, systemClock, legacyMigrations.filter((step) => step.version <= 2));
    await db.query(`SET search_path TO "${schema}"`);
    await db.query(`
      INSERT INTO policies VALUES ('default', '{"statements":[]}', 1, '${at}');
      INSERT INTO templates VALUES ('default', 'default', 365, '["EC P-256"]', false, false, '{}', '${at}', '${at}');
      INSERT INTO devices VALUES ('enrolled', 'device', 'active', 'default', NULL, '{"tenant":"victim"}', NULL, '${at}', '${at}');
      INSERT INTO devices VALUES ('registered', 'device', 'active', 'default', NULL, '{"tenant":"acme"}', NULL, '${at}', '${at}');
      INSERT INTO audit_log (id, at, actor, action, result, device_id, prev_hash, hash)
        VALUES (1, '${at}', 'cli', 'device.register', 'ok', 'registered', '${'0'.repeat(64)}', '${'1'.repeat(64)}');
    `);
    const registry = await open(schema);
    expect(await registry.getDevice('enrolled')).toMatchObject({ attributes: {}, reportedAttributes: { tenant: 'victim' } });
    expect(await registry.getDevice('registered')).toMatchObject({ attributes: { tenant: 'acme' }, reportedAttributes: {} });
  });

  it('takes the schema from ?schema= in the URL, and openRegistry picks PostgreSQL for postgres:// and postgresql:// URLs', async () => {
    const schema = schemas.fresh();
    const url = new URL(testDatabaseUrl);
    url.searchParams.set('schema', schema);
    const viaUrl = await openRegistry(url.toString());
    opened.push(viaUrl);
    await viaUrl.appendAudit(audit('hello'));

    const postgresql = await openRegistry(url.toString().replace(/^postgres:/, 'postgresql:'));
    opened.push(postgresql);
    expect(await postgresql.queryAudit()).toMatchObject([{ action: 'hello' }]);

    const db = await schemas.connect(schema);
    expect((await db.query('SELECT action FROM audit_log')).rows).toEqual([{ action: 'hello' }]);
  });

  it('refuses a schema name that is not a plain identifier with CONFIG_INVALID', async () => {
    for (const schema of ['a b', 'x;drop', '1abc', '"q"']) {
      await expect(openPostgresRegistry({ url: testDatabaseUrl, schema })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    }
  });

  it('starts with a role that has only privileges on an existing schema (no CREATE anywhere)', async () => {
    const schema = schemas.fresh();
    const owner = await open(schema);
    await seedDefaults(owner);
    const role = `${schema}_app`;
    const db = await schemas.connect(schema);
    await db.query(`CREATE ROLE ${role} LOGIN`);
    try {
      await db.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA ${schema} TO ${role}`);
      const url = new URL(testDatabaseUrl);
      url.username = role;
      const app = await open(schema, { url: url.toString() });
      await app.appendAudit(audit('as the app role'));
      expect(await app.getTemplate('default')).toBeDefined();
      expect(await owner.verifyAudit()).toMatchObject({ ok: true, entries: 4 });
      await app.close();
    } finally {
      await db.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('refuses a schema written by a newer fleetgate', async () => {
    const schema = schemas.fresh();
    await (await openPostgresRegistry({ url: testDatabaseUrl, schema })).close();
    const db = await schemas.connect(schema);
    await db.query("INSERT INTO kysely_migration (name, timestamp) VALUES ('9999-from-the-future', '2030-01-01T00:00:00.000Z')");
    const error = await openPostgresRegistry({ url: testDatabaseUrl, schema }).then(() => undefined, (reason: unknown) => reason);
    expect(error).toBeInstanceOf(FleetgateError);
    expect(error).toMatchObject({ code: 'CONFIG_INVALID', detail: { databaseVersion: 9999 } });
  });

  it('migrates once when several processes open a fresh schema at the same time', async () => {
    const schema = schemas.fresh();
    const registries = await Promise.all(Array.from({ length: 4 }, () => open(schema)));
    await Promise.all(registries.map((registry, n) => registry.appendAudit(audit(`opened.${n}`))));
    const db = await schemas.connect(schema);
    expect((await db.query('SELECT name FROM kysely_migration ORDER BY name')).rows).toEqual(steps.map((step) => ({ name: step.name })));
    expect(await registries[0]?.verifyAudit()).toMatchObject({ ok: true, entries: 4 });
  });

  it('makes the audit log append-only in the database itself (UPDATE, DELETE, TRUNCATE; the id counter never goes back)', async () => {
    const schema = schemas.fresh();
    const registry = await open(schema);
    await registry.appendAudit({ actor: 'broker', action: 'mqtt.connect', result: 'refused', code: 'AUTH_CERT_REVOKED' });
    const db = await schemas.connect(schema);

    await expect(db.query("UPDATE audit_log SET result = 'ok'")).rejects.toThrow(/append-only/);
    await expect(db.query('DELETE FROM audit_log')).rejects.toThrow(/append-only/);
    await expect(db.query('TRUNCATE audit_log')).rejects.toThrow(/append-only/);
    await expect(db.query('UPDATE audit_sequence SET last_id = 0')).rejects.toThrow(/only moves forward/);
    await expect(db.query('DELETE FROM audit_sequence')).rejects.toThrow(/only moves forward/);
    expect(await registry.queryAudit()).toMatchObject([{ result: 'refused', code: 'AUTH_CERT_REVOKED' }]);
    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 1 });
  });

  it('stores NUL in audit text as U+FFFD (PostgreSQL text cannot hold NUL) and finds nothing for a lookup containing NUL', async () => {
    const registry = await open(schemas.fresh());
    const entry = await registry.appendAudit({ actor: 'api@\ud800', action: 'api GET /x\udc00\u0000/☃', result: 'refused', deviceId: 'dev-\u0000', detail: { text: 'a\ud800b\u0000', emoji: '🔐' } });
    expect(entry).toMatchObject({ actor: 'api@\ufffd', action: 'api GET /x\ufffd\ufffd/☃', deviceId: 'dev-\ufffd', detail: { text: 'a\ud800b\u0000', emoji: '🔐' } });
    expect(await registry.queryAudit()).toEqual([entry]);
    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 1 });
    expect(await registry.getDevice('a\u0000b')).toBeUndefined();
    expect(await registry.queryAudit({ actor: 'api@\u0000' })).toEqual([]);
  });

  it('refuses a write whose lookup holds NUL as invalid input, as before the move to Kysely (not as "not found")', async () => {
    const registry = await open(schemas.fresh());
    await seedDefaults(registry);
    await expect(registry.setDeviceStatus({ id: 'a\u0000b', status: 'revoked', reason: null, audit: audit('device.revoke') })).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
    expect(await registry.verifyAudit()).toMatchObject({ ok: true });
  });

  it('keeps JSON as written: key order of policies and attributes round-trips', async () => {
    const registry = await open(schemas.fresh());
    await seedDefaults(registry);
    const policy = await registry.getPolicy('default');
    expect(JSON.stringify(policy?.document)).toBe(JSON.stringify(defaultDevicePolicy));
    await registry.registerCertificate({ device: { id: 'd1', kind: 'device', template: 'default', attributes: { zeta: '1', alpha: '2' } }, certificate: certificate(1), mustBeNew: true, audit: audit('device.register') });
    expect(Object.keys((await registry.getDevice('d1'))?.attributes ?? {})).toEqual(['zeta', 'alpha']);
  });

  describe('two processes on one database', () => {
    it('never exceeds max-uses when 12 enrollments race for 3 uses', async () => {
      const schema = schemas.fresh();
      const a = await open(schema);
      const b = await open(schema);
      await seedDefaults(a);
      await expectClaimRaceHeld(a, b);
    });

    it('registers a new id once when two processes race for it', async () => {
      const schema = schemas.fresh();
      const a = await open(schema);
      const b = await open(schema);
      await seedDefaults(a);
      const results = await Promise.allSettled(
        [a, b, a, b].map((registry, n) =>
          registry.registerCertificate({ device: { id: 'twin', kind: 'device', template: 'default' }, certificate: certificate(n), mustBeNew: true, audit: audit('device.register') }),
        ),
      );
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
      expect(results.filter((result) => result.status === 'rejected').map((result) => (result.reason as FleetgateError).code)).toEqual(Array(3).fill('DEVICE_EXISTS'));
      expect(await a.listCertificates('twin')).toHaveLength(1);
    });

    it('keeps one linear audit chain when both append at the same time, and verifying meanwhile never sees a break', async () => {
      const schema = schemas.fresh();
      const a = await open(schema);
      const b = await open(schema);
      const perProcess = 150;
      let writing = true;
      const verdicts: Awaited<ReturnType<Registry['verifyAudit']>>[] = [];
      const verifier = (async () => {
        while (writing) verdicts.push(await a.verifyAudit());
      })();
      try {
        await Promise.all(
          [a, b].map(async (registry, p) => {
            // Ten appends in flight per process, each on its own pooled connection.
            const lanes = Array.from({ length: 10 }, async (_, lane) => {
              for (let n = lane; n < perProcess; n += 10) await registry.appendAudit({ actor: `p${p}`, action: 'concurrent.append', result: 'ok', detail: { n } });
            });
            await Promise.all(lanes);
          }),
        );
      } finally {
        writing = false;
        await verifier;
      }
      expect(verdicts.filter((verdict) => !verdict.ok)).toEqual([]);

      expect(await b.verifyAudit()).toMatchObject({ ok: true, entries: perProcess * 2, head: { id: perProcess * 2 } });
      const order = (await a.queryAudit({ afterId: 0, limit: 1000 })).map((entry) => entry.actor);
      expect(order).toHaveLength(perProcess * 2);
      const switches = order.filter((actor, index) => index > 0 && actor !== order[index - 1]).length;
      // One process after the other would switch once and prove nothing.
      expect(switches).toBeGreaterThan(4);
    });
  });

  describe('when PostgreSQL goes away', () => {
    it('refuses to open when nothing listens', async () => {
      const proxy = await startPostgresProxy();
      await proxy.stop();
      await expect(openPostgresRegistry({ url: databaseUrlVia(proxy.port), schema: schemas.fresh(), connectTimeoutMs: 1000 })).rejects.toThrow();
    });

    it('rejects calls while the server is down or unreachable, and works again once it is back', async () => {
      const proxy = await startPostgresProxy();
      const errors: Error[] = [];
      const registry = await openPostgresRegistry({ url: databaseUrlVia(proxy.port), schema: schemas.fresh(), connectTimeoutMs: 1000, queryTimeoutMs: 1000, onError: (error) => errors.push(error) });
      opened.push(registry);
      await seedDefaults(registry);
      await registry.appendAudit(audit('before'));

      // Server gone: every connection cut, new ones refused.
      await proxy.stop();
      await expect(registry.getAdmission('7a01')).rejects.toThrow();
      await expect(registry.appendAudit(audit('while down'))).rejects.toThrow();
      await expect(registry.getPolicy('default')).rejects.toThrow();

      await proxy.start();
      await eventually(() => registry.getPolicy('default'));
      await registry.appendAudit(audit('after restart'));

      // Network black hole: connections stay open but nothing comes back; only the timeouts end the wait.
      proxy.stall();
      await expect(registry.getPolicy('default')).rejects.toThrow();
      await expect(registry.appendAudit(audit('while stalled'))).rejects.toThrow();

      await proxy.start();
      await eventually(() => registry.appendAudit(audit('after stall')));
      expect((await registry.queryAudit({ afterId: 0 })).map((entry) => entry.action).filter((action) => action !== 'policy.put' && action !== 'template.put')).toEqual([
        'before',
        'after restart',
        'after stall',
      ]);
      expect(await registry.verifyAudit()).toMatchObject({ ok: true });
      await registry.close();
      await proxy.close();
    });

    it('reports queued audit entries it cannot write to their callers, and does not hang on flush or close', async () => {
      const proxy = await startPostgresProxy();
      const schema = schemas.fresh();
      const registry = await openPostgresRegistry({ url: databaseUrlVia(proxy.port), schema, connectTimeoutMs: 1000, queryTimeoutMs: 1000, onError: () => undefined });
      opened.push(registry);
      const unexpected: unknown[] = [];
      registry.queueAudit(audit('before'), (error) => unexpected.push(error));
      await registry.flushAudit();

      await proxy.stop();
      const lost: string[] = [];
      for (const action of ['down.1', 'down.2']) registry.queueAudit(audit(action), () => lost.push(action));
      await registry.flushAudit();
      expect(lost).toEqual(['down.1', 'down.2']);

      await proxy.start();
      await eventually(() => registry.appendAudit(audit('after restart')));
      registry.queueAudit(audit('queued after restart'), (error) => unexpected.push(error));
      await registry.close();
      expect(unexpected).toEqual([]);
      const db = await schemas.connect(schema);
      expect((await db.query<{ action: string }>('SELECT action FROM audit_log ORDER BY id')).rows.map((row) => row.action)).toEqual(['before', 'after restart', 'queued after restart']);
      await proxy.close();
    });
  });
});

/** Retries until the call succeeds: the pool may still hand out a connection that died with the server. */
async function eventually<T>(call: () => Promise<T>, attempts = 50): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
