import type pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openPostgresRegistry, type Registry } from '../../registry/index.ts';
import { auditEntryHash } from '../../registry/audit-chain.ts';
import { testDatabaseUrl, testSchemas } from '../helpers/postgres.ts';

/**
 * The SQLite tampering tests (audit-chain.test.ts), against PostgreSQL: someone with a superuser psql
 * session disables the append-only triggers and changes or removes rows. Each break must be reported at the
 * right entry. (The multi-process tests are in postgres-registry.test.ts.)
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
  for (let n = 1; n <= count; n += 1) {
    await registry.appendAudit({ actor: 'operator:ops', action: `step.${n}`, result: n % 2 === 0 ? 'ok' : 'refused', code: 'API_FORBIDDEN', deviceId: `sensor-${n}`, detail: { n } });
  }
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

/** What an attacker who knows the algorithm computes to make a changed row look consistent. */
function rehash(row: RawAuditRow, prevHash: string): string {
  return auditEntryHash(prevHash, { ...row, id: Number(row.id), at: row.at.toISOString(), deviceId: row.device_id });
}

describe('audit hash chain (postgres)', () => {
  it('stores prev_hash and hash with each entry, starting from the genesis hash', async () => {
    const { schema } = await withEntries(3);
    await tamper(schema, async (db) => {
      const rows = (await db.query<RawAuditRow>(`SELECT ${rawColumns} FROM audit_log ORDER BY id`)).rows;
      expect(rows.map((row) => Number(row.id))).toEqual([1, 2, 3]);
      expect(rows[0]?.prev_hash).toBe('0'.repeat(64));
      for (const [index, row] of rows.entries()) {
        expect(row.hash).toBe(rehash(row, row.prev_hash));
        if (index > 0) expect(row.prev_hash).toBe(rows[index - 1]?.hash);
      }
    });
  });

  it.each([
    ['detail', `UPDATE audit_log SET detail = '{"n":999}' WHERE id = 3`],
    ['detail whitespace', `UPDATE audit_log SET detail = '{"n": 3}' WHERE id = 3`],
    ['at', "UPDATE audit_log SET at = '2000-01-01T00:00:00.000Z' WHERE id = 3"],
    ['at by a millisecond', "UPDATE audit_log SET at = at + interval '1 millisecond' WHERE id = 3"],
    ['actor', "UPDATE audit_log SET actor = 'operator:someone-else' WHERE id = 3"],
    ['action', "UPDATE audit_log SET action = 'step.harmless' WHERE id = 3"],
    ['result', "UPDATE audit_log SET result = 'ok' WHERE id = 3"],
    ['code', 'UPDATE audit_log SET code = NULL WHERE id = 3'],
    ['device_id', "UPDATE audit_log SET device_id = 'sensor-99' WHERE id = 3"],
  ])('finds a changed %s at that entry', async (_column, sql) => {
    const { schema, registry } = await withEntries(5);
    const intact = await registry.verifyAudit();
    await tamper(schema, (db) => db.query(sql));
    expect(await registry.verifyAudit()).toEqual({
      ok: false,
      entries: 2,
      firstBrokenId: 3,
      reason: 'entry 3 does not match its hash (its content was changed)',
      head: { id: 2, hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
    });
    expect(intact).toMatchObject({ ok: true, entries: 5, head: { id: 5 } });
  });

  it('finds a removed entry in the middle, at its id', async () => {
    const { schema, registry } = await withEntries(5);
    await tamper(schema, (db) => db.query('DELETE FROM audit_log WHERE id = 3'));
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 2, firstBrokenId: 3, reason: 'entry 3 is missing', head: { id: 2 } });
  });

  it('finds a removed tail, also after new entries were appended behind it', async () => {
    const { schema, registry } = await withEntries(5);
    await tamper(schema, (db) => db.query('DELETE FROM audit_log WHERE id >= 4'));
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entries 4 to 5 are missing from the end of the log' });

    // Ids are never reused: the next entry gets 6, and the hole stays visible.
    expect((await registry.appendAudit({ actor: 'system', action: 'later', result: 'ok' })).id).toBe(6);
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entries 4 to 5 are missing' });
  });

  it('finds a rewritten entry whose own hash was recomputed, at the next entry', async () => {
    const { schema, registry } = await withEntries(5);
    await tamper(schema, async (db) => {
      const row = (await db.query<RawAuditRow>(`SELECT ${rawColumns} FROM audit_log WHERE id = 3`)).rows[0] as RawAuditRow;
      const forged = { ...row, detail: '{"n":0}' };
      await db.query('UPDATE audit_log SET detail = $1, hash = $2 WHERE id = 3', [forged.detail, rehash(forged, row.prev_hash)]);
    });
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entry 4 does not link to the hash of entry 3' });
  });

  it('finds a forged entry inserted by hand (the triggers do not stop INSERT)', async () => {
    const { schema, registry } = await withEntries(2);
    await tamper(schema, (db) =>
      db.query("INSERT INTO audit_log (id, at, actor, action, result, prev_hash, hash) VALUES (3, now(), 'system', 'forged', 'ok', $1, $2)", ['0'.repeat(64), 'f'.repeat(64)]),
    );
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 2, firstBrokenId: 3, reason: 'entry 3 does not link to the hash of entry 2' });
  });

  it('finds a cut tail with a reset id counter only through an anchor', async () => {
    const { schema, registry } = await withEntries(5);
    const recorded = await registry.verifyAudit();
    await tamper(schema, (db) => db.query('DELETE FROM audit_log WHERE id >= 4; UPDATE audit_sequence SET last_id = 3'));
    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 3 });
    expect(await registry.verifyAudit({ anchor: recorded.head! })).toMatchObject({
      ok: false,
      entries: 3,
      firstBrokenId: 4,
      reason: 'entry 5, recorded earlier, is no longer in the log',
    });
  });

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
