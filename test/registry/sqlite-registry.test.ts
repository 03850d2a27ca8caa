import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { backendPolicy, defaultDevicePolicy, fixedClock, FleetgateError, systemClock } from '../../core/index.ts';
import { openSqliteRegistry, type Registry, seedDefaults } from '../../registry/index.ts';
import { migrate } from '../../registry/migrate.ts';
import { steps } from '../../registry/sqlite/schema-steps.ts';
import { sqliteDialect } from '../../registry/sqlite/sqlite-dialect.ts';
import { expectUpgraded, legacyAt as at, legacyAuditRows } from './fixtures/legacy-data.ts';
import { migrateSqlite as legacyMigrate, sqliteMigrations as legacyMigrations } from './fixtures/legacy-runners.ts';
import { expectClaimRaceHeld } from './fixtures/claim-race.ts';
import { describeRegistryContract } from './registry-contract.ts';

let dir: string;
let files = 0;
/** A fresh database file per call, all inside one temporary directory removed at the end. */
const freshPath = () => join(dir, `registry-${(files += 1)}.db`);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-registry-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describeRegistryContract('sqlite (file)', () => openSqliteRegistry({ path: freshPath() }));

describe('sqlite registry', () => {
  const opened: Registry[] = [];
  const raw: Database.Database[] = [];

  async function open(path: string, clock = systemClock): Promise<Registry> {
    const registry = await openSqliteRegistry({ path, clock });
    opened.push(registry);
    return registry;
  }

  /** A second connection that looks at the file the way an operator with the sqlite3 shell would. */
  function inspect(path: string): Database.Database {
    const db = new Database(path);
    raw.push(db);
    return db;
  }

  afterEach(async () => {
    for (const registry of opened.splice(0)) await registry.close();
    for (const db of raw.splice(0)) db.close();
  });

  it('puts the database file in WAL mode', async () => {
    const path = freshPath();
    await open(path);
    expect(inspect(path).pragma('journal_mode', { simple: true })).toBe('wal');
  });

  it('keeps its data when reopened and does not run migrations again', async () => {
    const path = freshPath();
    const first = await open(path, fixedClock('2025-01-01T00:00:00.000Z'));
    await seedDefaults(first);
    await first.registerCertificate({
      device: { id: 'sensor-1', kind: 'device', template: 'default' },
      certificate: { serial: '01', fingerprint: 'f1', publicKeyHash: 'k1', notBefore: new Date('2025-01-01T00:00:00Z'), notAfter: new Date('2026-01-01T00:00:00Z'), pem: 'pem' },
      mustBeNew: true,
      audit: { actor: 'test', action: 'device.register', result: 'ok' },
    });
    await first.close();
    const applied = () => inspect(path).prepare('SELECT name, timestamp FROM kysely_migration ORDER BY name').all() as { name: string }[];
    const afterFirst = applied();
    expect(afterFirst.map((row) => row.name)).toEqual(steps.map((step) => step.name));

    const second = await open(path, fixedClock('2026-06-01T00:00:00.000Z'));
    expect(await second.getDevice('sensor-1')).toMatchObject({ status: 'active', createdAt: new Date('2025-01-01T00:00:00.000Z') });
    expect(await second.getPolicy('default')).toMatchObject({ version: 1 });
    expect(await second.queryAudit()).toHaveLength(4);

    // Applied once, at the first open: the reopen did not run them again, nor does another migrate.
    expect(applied()).toEqual(afterFirst);
    const dialect = sqliteDialect(path);
    expect(await migrate(dialect)).toEqual([]);
    await dialect.close();
  });

  it('upgrades in place a database made by the migration runner before Kysely, and older fleetgates then refuse it', async () => {
    const path = freshPath();
    const old = inspect(path);
    legacyMigrate(old, fixedClock('2024-05-06T07:08:09.010Z'));
    old.exec(`
      INSERT INTO policies VALUES ('default', '{"statements":[]}', 1, '${at}');
      INSERT INTO templates VALUES ('default', 'default', 365, '["EC P-256"]', 0, 0, '${at}', '${at}', '{}');
      INSERT INTO claims (id, template, certificate_serial, max_uses, uses, expires_at, status, created_at) VALUES ('batch', 'default', 'c1', 5, 1, '2030-01-01T00:00:00.000Z', 'active', '${at}');
      INSERT INTO devices (id, kind, status, template, policy, attributes, status_reason, created_at, updated_at, reported_attributes)
        VALUES ('sn-1', 'device', 'active', 'default', NULL, '{}', NULL, '${at}', '${at}', '{"fw":"1.0"}');
      INSERT INTO certificates VALUES ('0a', 'sn-1', 'f1', 'k1', '${at}', '2026-01-01T00:00:00.000Z', 'active', 'pem', '${at}', NULL, NULL, NULL);
    `);
    const insert = old.prepare('INSERT INTO audit_log (id, at, actor, action, result, code, device_id, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    for (const row of legacyAuditRows()) insert.run(row.id, row.at, row.actor, row.action, row.result, row.code, row.deviceId, row.detail, row.prevHash, row.hash);

    await expectUpgraded(await open(path));

    const db = inspect(path);
    // The old runner's versions are recorded as Kysely's steps, at the time the old runner applied them.
    expect(db.prepare('SELECT name, timestamp FROM kysely_migration ORDER BY name').all()).toEqual(
      steps.map((step, index) => ({ name: step.name, timestamp: index < 4 ? '2024-05-06T07:08:09.010Z' : expect.any(String) })),
    );
    expect(() => legacyMigrate(db, systemClock)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', detail: { databaseVersion: 5, supportedVersion: 4 } }));
  });

  it('moves attributes that devices reported before the trusted/reported split out of the policy-visible column', async () => {
    const path = freshPath();
    const old = inspect(path);
    legacyMigrate(old, systemClock, legacyMigrations.filter((step) => step.version <= 3));
    old.exec(`
      INSERT INTO policies VALUES ('default', '{"statements":[]}', 1, '${at}');
      INSERT INTO templates VALUES ('default', 'default', 365, '["EC P-256"]', 0, 0, '${at}', '${at}', '{}');
      INSERT INTO devices VALUES ('enrolled', 'device', 'active', 'default', NULL, '{"tenant":"victim"}', NULL, '${at}', '${at}');
      INSERT INTO devices VALUES ('registered', 'device', 'active', 'default', NULL, '{"tenant":"acme"}', NULL, '${at}', '${at}');
      INSERT INTO audit_log (id, at, actor, action, result, device_id, prev_hash, hash)
        VALUES (1, '${at}', 'cli', 'device.register', 'ok', 'registered', '${'0'.repeat(64)}', '${'1'.repeat(64)}');
    `);
    const registry = await open(path);
    expect(await registry.getDevice('enrolled')).toMatchObject({ attributes: {}, reportedAttributes: { tenant: 'victim' } });
    expect(await registry.getDevice('registered')).toMatchObject({ attributes: { tenant: 'acme' }, reportedAttributes: {} });
  });

  it('refuses a database written by a newer fleetgate', async () => {
    const path = freshPath();
    await (await open(path)).close();
    inspect(path).prepare("INSERT INTO kysely_migration (name, timestamp) VALUES ('9999-from-the-future', '2030-01-01T00:00:00.000Z')").run();

    const error: unknown = await openSqliteRegistry({ path }).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(FleetgateError);
    expect(error).toMatchObject({ code: 'CONFIG_INVALID', detail: { databaseVersion: 9999 } });
  });

  it('makes the audit log append-only in the database itself', async () => {
    const path = freshPath();
    const registry = await open(path);
    await registry.appendAudit({ actor: 'broker', action: 'mqtt.connect', result: 'refused', code: 'AUTH_CERT_REVOKED' });
    const db = inspect(path);

    expect(() => db.prepare("UPDATE audit_log SET result = 'ok'").run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
    expect(await registry.queryAudit()).toMatchObject([{ result: 'refused', code: 'AUTH_CERT_REVOKED' }]);
  });

  it('seeds the default policies and template once and never overwrites them', async () => {
    const registry = await open(freshPath());
    await seedDefaults(registry);
    await seedDefaults(registry);

    expect(await registry.listPolicies()).toMatchObject([
      { name: 'backend', version: 1, document: backendPolicy },
      { name: 'default', version: 1, document: defaultDevicePolicy },
    ]);
    expect(await registry.getTemplate('default')).toMatchObject({
      policy: 'default',
      validityDays: 365,
      keyTypes: ['EC P-256', 'EC P-384', 'RSA 2048', 'RSA 3072', 'RSA 4096'],
      requireAllowlist: false,
      allowReenroll: false,
    });
    const seeded = await registry.queryAudit();
    expect(seeded).toHaveLength(3);
    expect(seeded.every((entry) => entry.actor === 'system' && entry.result === 'ok')).toBe(true);

    const edited = { statements: [{ effect: 'allow', actions: ['publish'], topics: ['devices/${device.id}/up'] }] } as const;
    await registry.putPolicy('default', edited, { actor: 'operator', action: 'policy.put', result: 'ok' });
    await seedDefaults(registry);
    expect(await registry.getPolicy('default')).toMatchObject({ version: 2, document: edited });
    expect(await registry.queryAudit()).toHaveLength(4);
  });

  it('lets two connections share one file', async () => {
    const path = freshPath();
    const a = await open(path);
    const b = await open(path);
    await seedDefaults(a);
    await seedDefaults(b);
    await b.appendAudit({ actor: 'b', action: 'hello', result: 'ok' });
    expect(await a.listPolicies()).toHaveLength(2);
    expect(await a.queryAudit({ actor: 'b' })).toHaveLength(1);
    expect(await b.queryAudit({ actor: 'system' })).toHaveLength(3);
  });

  it('never exceeds max-uses when 12 enrollments race for 3 uses over two connections to one file', async () => {
    const path = freshPath();
    const a = await open(path);
    const b = await open(path);
    await seedDefaults(a);
    await expectClaimRaceHeld(a, b);
  });

  it('lets a write in flight finish before the file closes', async () => {
    const path = freshPath();
    const registry = await openSqliteRegistry({ path });
    await seedDefaults(registry);
    const write = registry.appendAudit({ actor: 'test', action: 'in-flight', result: 'ok' });
    await registry.close();
    await expect(write).resolves.toMatchObject({ action: 'in-flight' });
    const again = await open(path);
    expect(await again.queryAudit({ action: 'in-flight' })).toHaveLength(1);
  });

  it("works in memory with ':memory:'", async () => {
    const registry = await open(':memory:');
    await seedDefaults(registry);
    expect(await registry.getTemplate('default')).toBeDefined();
  });
});
