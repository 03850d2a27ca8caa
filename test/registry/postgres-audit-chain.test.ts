import type pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openPostgresRegistry, type Registry } from '../../registry/index.ts';
import { auditEntryHash } from '../../registry/audit-chain.ts';
import { testDatabaseUrl, testSchemas } from '../helpers/postgres.ts';
import { describeAuditChainContract } from './audit-chain-contract.ts';

/**
 * Tampering with the PostgreSQL audit log: someone with a superuser psql session disables the append-only
 * triggers and changes or removes rows. Each break must be reported at the right entry: the cases every
 * database shares are the contract (audit-chain-contract.ts); PostgreSQL's own follow. (The multi-process
 * tests are in postgres-registry.test.ts.)
 */

const schemas = testSchemas();
const opened: Registry[] = [];

afterEach(async () => {
  for (const registry of opened.splice(0)) await registry.close();
});

afterAll(async () => {
  await schemas.dropAll();
});

/** A registry whose log holds entries 1..count, in a schema of its own. */
async function withEntries(count: number): Promise<{ schema: string; registry: Registry }> {
  const schema = schemas.fresh();
  const registry = await openPostgresRegistry({ url: testDatabaseUrl, schema });
  opened.push(registry);
  // Group-committed (queueAudit): the same chain as one transaction per entry, without 4,200 round trips
  // that outlast the test's timeout on a busy machine.
  const failures: unknown[] = [];
  for (let n = 1; n <= count; n += 1) {
    registry.queueAudit({ actor: 'operator:ops', action: `step.${n}`, result: n % 2 === 0 ? 'ok' : 'refused', code: 'API_FORBIDDEN', deviceId: `sensor-${n}`, detail: { n } }, (error) => failures.push(error));
  }
  await registry.flushAudit();
  expect(failures).toEqual([]);
  return { schema, registry };
}

interface RawAuditRow {
  id: string;
  at: Date;
  actor: string;
  action: string;
  result: string;
  code: string | null;
  device_id: string | null;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

const rawColumns = 'id, at, actor, action, result, code, device_id, detail::text AS detail, prev_hash, hash';

/** A psql session of a superuser, with the append-only triggers disabled. */
async function tamper(schema: string, work: (db: pg.Client) => Promise<unknown>): Promise<void> {
  const db = await schemas.connect(schema);
  await db.query('ALTER TABLE audit_log DISABLE TRIGGER USER; ALTER TABLE audit_sequence DISABLE TRIGGER USER');
  await work(db);
}

/** A raw row in the form its hash covers. */
const stored = (row: RawAuditRow) => ({ ...row, id: Number(row.id), at: row.at.toISOString(), deviceId: row.device_id, prevHash: row.prev_hash });

describeAuditChainContract('postgres', {
  changes: [['at by a millisecond', "UPDATE audit_log SET at = at + interval '1 millisecond' WHERE id = 3"]],
  refuseInserts: {
    block: `CREATE FUNCTION audit_log_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'inserts refused for the test'; END $$;
      CREATE TRIGGER audit_log_refuse_insert BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_insert()`,
    unblock: 'DROP TRIGGER audit_log_refuse_insert ON audit_log; DROP FUNCTION audit_log_refuse_insert()',
  },
  async open() {
    const schema = schemas.fresh();
    const registry = await openPostgresRegistry({ url: testDatabaseUrl, schema });
    // One psql session per registry, opened when first needed, triggers disabled.
    let session: Promise<pg.Client> | undefined;
    const psql = () => (session ??= schemas.connect(schema).then(async (db) => {
      await db.query('ALTER TABLE audit_log DISABLE TRIGGER USER; ALTER TABLE audit_sequence DISABLE TRIGGER USER');
      return db;
    }));
    const run = async (text: string, values?: unknown[]) => {
      await (await psql()).query(text, values);
    };
    return {
      registry,
      tamper: {
        exec: (sql) => run(sql),
        rows: async () => (await (await psql()).query<RawAuditRow>(`SELECT ${rawColumns} FROM audit_log ORDER BY id`)).rows.map(stored),
        rewrite: (id, values) => run('UPDATE audit_log SET detail = COALESCE($1::json, detail), prev_hash = $2, hash = $3 WHERE id = $4', [values.detail ?? null, values.prevHash, values.hash, id]),
        resetCounter: (to) => run('UPDATE audit_sequence SET last_id = $1', [to]),
        forge: (id) => run("INSERT INTO audit_log (id, at, actor, action, result, prev_hash, hash) VALUES ($1, now(), 'system', 'forged', 'ok', $2, $3)", [id, '0'.repeat(64), 'f'.repeat(64)]),
      },
    };
  },
});

/** What an attacker who knows the algorithm computes to make a changed row look consistent. */
const rehash = (row: RawAuditRow, prevHash: string): string => auditEntryHash(prevHash, stored(row));

describe('audit hash chain (postgres)', () => {
  it('verifies a log written by SQLite rules: the hash covers `at` as ISO text with milliseconds, whatever the session time zone', async () => {
    const { schema, registry } = await withEntries(3);
    const db = await schemas.connect(schema);
    await db.query("SET TIME ZONE 'America/St_Johns'");
    const rows = (await db.query<RawAuditRow>(`SELECT ${rawColumns} FROM audit_log ORDER BY id`)).rows;
    for (const row of rows) expect(row.hash).toBe(rehash(row, row.prev_hash));
    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 3 });
  });

  it('walks long logs in batches, including entries appended while it walks', async () => {
    const { schema, registry } = await withEntries(4_200);
    // Unlike SQLite's synchronous first batch, here the append may commit before or after the walk's last
    // read: either way the walk must come out intact, and with the entry once it committed in time.
    const walking = registry.verifyAudit();
    await registry.appendAudit({ actor: 'system', action: 'during', result: 'ok' });
    const verdict = await walking;
    expect(verdict.ok).toBe(true);
    expect([4_200, 4_201]).toContain(verdict.entries);
    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 4_201, head: { id: 4_201 } });

    await tamper(schema, (db) => db.query("UPDATE audit_log SET actor = 'x' WHERE id = 4100"));
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 4_099, firstBrokenId: 4_100 });
  });
});
