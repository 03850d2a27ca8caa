import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteRegistry, type Registry } from '../../registry/index.ts';
import { auditEntryHash } from '../../registry/audit-chain.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * Tampering with the SQLite audit log the way someone with the file would: a raw connection, the
 * append-only triggers dropped, rows changed or removed. Each break must be reported at the right entry.
 */

let dir: ReturnType<typeof makeTempDir>;
let files = 0;
const freshPath = () => join(dir.path, `audit-${(files += 1)}.db`);

beforeAll(() => {
  dir = makeTempDir('fleetgate-audit-chain-');
});

afterAll(() => {
  dir.remove();
});

const opened: Registry[] = [];

afterEach(async () => {
  for (const registry of opened.splice(0)) await registry.close();
});

async function open(path: string): Promise<Registry> {
  const registry = await openSqliteRegistry({ path });
  opened.push(registry);
  return registry;
}

/** A registry whose log holds entries 1..count. */
async function withEntries(count: number): Promise<{ path: string; registry: Registry }> {
  const path = freshPath();
  const registry = await open(path);
  for (let n = 1; n <= count; n += 1) {
    await registry.appendAudit({ actor: 'operator:ops', action: `step.${n}`, result: n % 2 === 0 ? 'ok' : 'refused', code: 'API_FORBIDDEN', deviceId: `sensor-${n}`, detail: { n } });
  }
  return { path, registry };
}

interface RawAuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  result: string;
  code: string | null;
  device_id: string | null;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

/** Opens the file as an attacker with the sqlite3 shell would, with the append-only triggers gone. */
function tamper(path: string, work: (db: Database.Database) => void): void {
  const db = new Database(path);
  try {
    db.exec('DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;');
    work(db);
  } finally {
    db.close();
  }
}

/** What an attacker who knows the algorithm computes to make a changed row look consistent. */
function rehash(row: RawAuditRow, prevHash: string): string {
  return auditEntryHash(prevHash, { ...row, deviceId: row.device_id });
}

describe('audit hash chain (sqlite)', () => {
  it('stores prev_hash and hash with each entry, starting from the genesis hash', async () => {
    const { path } = await withEntries(3);
    tamper(path, (db) => {
      const rows = db.prepare<[], RawAuditRow>('SELECT * FROM audit_log ORDER BY id').all();
      expect(rows.map((row) => row.id)).toEqual([1, 2, 3]);
      expect(rows[0]?.prev_hash).toBe('0'.repeat(64));
      for (const [index, row] of rows.entries()) {
        expect(row.hash).toBe(rehash(row, row.prev_hash));
        if (index > 0) expect(row.prev_hash).toBe(rows[index - 1]?.hash);
      }
    });
  });

  it.each([
    ['detail', "UPDATE audit_log SET detail = '{\"n\":999}' WHERE id = 3"],
    ['at', "UPDATE audit_log SET at = '2000-01-01T00:00:00.000Z' WHERE id = 3"],
    ['actor', "UPDATE audit_log SET actor = 'operator:someone-else' WHERE id = 3"],
    ['action', "UPDATE audit_log SET action = 'step.harmless' WHERE id = 3"],
    ['result', "UPDATE audit_log SET result = 'ok' WHERE id = 3"],
    ['code', 'UPDATE audit_log SET code = NULL WHERE id = 3'],
    ['device_id', "UPDATE audit_log SET device_id = 'sensor-99' WHERE id = 3"],
  ])('finds a changed %s at that entry', async (_column, sql) => {
    const { path, registry } = await withEntries(5);
    const intact = await registry.verifyAudit();
    tamper(path, (db) => db.exec(sql));
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
    const { path, registry } = await withEntries(5);
    tamper(path, (db) => db.exec('DELETE FROM audit_log WHERE id = 3'));
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 2, firstBrokenId: 3, reason: 'entry 3 is missing', head: { id: 2 } });
  });

  it('finds removed first entries', async () => {
    const { path, registry } = await withEntries(5);
    tamper(path, (db) => db.exec('DELETE FROM audit_log WHERE id <= 2'));
    const verdict = await registry.verifyAudit();
    expect(verdict).toEqual({ ok: false, entries: 0, firstBrokenId: 1, reason: 'entries 1 to 2 are missing' });
  });

  it('finds a removed tail, also after new entries were appended behind it', async () => {
    const { path, registry } = await withEntries(5);
    tamper(path, (db) => db.exec('DELETE FROM audit_log WHERE id >= 4'));
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entries 4 to 5 are missing from the end of the log' });

    // Ids are never reused: the next entry gets 6, and the hole stays visible.
    expect((await registry.appendAudit({ actor: 'system', action: 'later', result: 'ok' })).id).toBe(6);
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entries 4 to 5 are missing' });
  });

  it('finds a rewritten entry whose own hash was recomputed, at the next entry', async () => {
    const { path, registry } = await withEntries(5);
    tamper(path, (db) => {
      const row = db.prepare<[], RawAuditRow>('SELECT * FROM audit_log WHERE id = 3').get() as RawAuditRow;
      const forged = { ...row, detail: '{"n":0}' };
      db.prepare('UPDATE audit_log SET detail = ?, hash = ? WHERE id = 3').run(forged.detail, rehash(forged, row.prev_hash));
    });
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entry 4 does not link to the hash of entry 3' });
  });

  it('finds a removal hidden by re-linking the entries after it, by the gap in ids', async () => {
    const { path, registry } = await withEntries(5);
    tamper(path, (db) => {
      db.exec('DELETE FROM audit_log WHERE id = 3');
      let prevHash = (db.prepare('SELECT hash FROM audit_log WHERE id = 2').pluck().get() as string);
      for (const row of db.prepare<[], RawAuditRow>('SELECT * FROM audit_log WHERE id > 2 ORDER BY id').all()) {
        const hash = rehash(row, prevHash);
        db.prepare('UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?').run(prevHash, hash, row.id);
        prevHash = hash;
      }
    });
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, firstBrokenId: 3, reason: 'entry 3 is missing' });
  });

  it('finds a forged entry inserted by hand (the triggers do not stop INSERT)', async () => {
    const { path, registry } = await withEntries(2);
    tamper(path, (db) =>
      db.prepare("INSERT INTO audit_log (at, actor, action, result, prev_hash, hash) VALUES ('2025-01-01T00:00:00.000Z', 'system', 'forged', 'ok', ?, ?)").run('0'.repeat(64), 'f'.repeat(64)),
    );
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 2, firstBrokenId: 3, reason: 'entry 3 does not link to the hash of entry 2' });
  });

  it('cannot tell a complete rewrite by itself, but a head written down earlier gives it away', async () => {
    // Anyone who can write the file can recompute every hash: the chain proves integrity relative to a
    // head kept somewhere else (the operator's notes, a ticket, another system's log).
    const { path, registry } = await withEntries(4);
    const recorded = await registry.verifyAudit();
    tamper(path, (db) => {
      db.exec("UPDATE audit_log SET detail = '{\"n\":0}' WHERE id = 2");
      let prevHash = '0'.repeat(64);
      for (const row of db.prepare<[], RawAuditRow>('SELECT * FROM audit_log ORDER BY id').all()) {
        const hash = rehash(row, prevHash);
        db.prepare('UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?').run(prevHash, hash, row.id);
        prevHash = hash;
      }
    });
    const after = await registry.verifyAudit();
    expect(after).toMatchObject({ ok: true, entries: 4, head: { id: 4 } });
    expect(after.head?.hash).not.toBe(recorded.head?.hash);
    expect(await registry.verifyAudit({ anchor: recorded.head! })).toEqual({
      ok: false,
      entries: 0,
      firstBrokenId: 1,
      reason: 'entry 4 no longer has the hash recorded for it (the log was rewritten)',
    });
  });

  it('accepts an anchor the log still contains, however much was appended since', async () => {
    const { registry } = await withEntries(3);
    const recorded = await registry.verifyAudit();
    for (let n = 0; n < 5; n += 1) await registry.appendAudit({ actor: 'system', action: 'later', result: 'ok' });
    expect(await registry.verifyAudit({ anchor: recorded.head! })).toMatchObject({ ok: true, entries: 8, head: { id: 8 } });
  });

  it('finds a cut tail with a reset id counter only through an anchor', async () => {
    const { path, registry } = await withEntries(5);
    const recorded = await registry.verifyAudit();
    tamper(path, (db) => {
      db.exec('DELETE FROM audit_log WHERE id >= 4');
      db.exec("UPDATE sqlite_sequence SET seq = 3 WHERE name = 'audit_log'");
    });
    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 3 });
    expect(await registry.verifyAudit({ anchor: recorded.head! })).toMatchObject({
      ok: false,
      entries: 3,
      firstBrokenId: 4,
      reason: 'entry 5, recorded earlier, is no longer in the log',
    });
  });

  it('still refuses UPDATE and DELETE while the triggers are in place', async () => {
    const { path } = await withEntries(1);
    const db = new Database(path);
    try {
      expect(() => db.prepare("UPDATE audit_log SET hash = '0'").run()).toThrow(/append-only/);
      expect(() => db.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
    } finally {
      db.close();
    }
  });

  it('hashes text the way it is stored: lone surrogates, NUL and non-ASCII still verify', async () => {
    const registry = await open(freshPath());
    const entry = await registry.appendAudit({ actor: 'api@\ud800', action: 'api GET /x\udc00\u0000/☃', result: 'refused', deviceId: 'dev-\ud83d', detail: { text: 'a\ud800b', emoji: '🔐' } });
    expect(entry).toMatchObject({ actor: 'api@\ufffd', action: 'api GET /x\ufffd\u0000/☃', deviceId: 'dev-\ufffd', detail: { text: 'a\ud800b', emoji: '🔐' } });
    expect(await registry.queryAudit()).toEqual([entry]);
    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 1 });
  });

  it('walks long logs in batches, including entries appended while it walks', async () => {
    const { path, registry } = await withEntries(4_500);
    // verifyAudit hashes its first batch synchronously, then yields; the append lands in the middle.
    const walking = registry.verifyAudit();
    await registry.appendAudit({ actor: 'system', action: 'during', result: 'ok' });
    expect(await walking).toMatchObject({ ok: true, entries: 4_501, head: { id: 4_501 } });

    tamper(path, (db) => db.exec("UPDATE audit_log SET actor = 'x' WHERE id = 4100"));
    expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 4_099, firstBrokenId: 4_100 });
  });

  it('keeps one chain when two connections to the file append in turn', async () => {
    const path = freshPath();
    const a = await open(path);
    const b = await open(path);
    await Promise.all(Array.from({ length: 100 }, (_, n) => (n % 2 === 0 ? a : b).appendAudit({ actor: n % 2 === 0 ? 'a' : 'b', action: 'turn', result: 'ok', detail: { n } })));
    expect(await a.verifyAudit()).toMatchObject({ ok: true, entries: 100 });
    expect(await b.verifyAudit()).toMatchObject({ ok: true, entries: 100 });
  });

  it('keeps one chain when several processes append at the same time', async () => {
    const path = freshPath();
    const registry = await open(path);
    const perProcess = 150;
    const actors = ['p1', 'p2', 'p3'];
    const children = actors.map((actor) => startAppender(path, actor, perProcess));
    await Promise.all(children.map((child) => child.ready));
    for (const child of children) child.go();
    // Verifying while they write must never see a broken chain either.
    const verdicts = [];
    while (children.some((child) => !child.finished)) {
      verdicts.push(await registry.verifyAudit());
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(await Promise.all(children.map((child) => child.exited))).toEqual([0, 0, 0]);
    expect(verdicts.filter((verdict) => !verdict.ok)).toEqual([]);

    expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: perProcess * actors.length });
    const order = (await registry.queryAudit({ afterId: 0, limit: 1000 })).map((entry) => entry.actor);
    const switches = order.filter((actor, index) => index > 0 && actor !== order[index - 1]).length;
    // Run one after the other, the processes would switch actors.length - 1 times and prove nothing.
    expect(switches).toBeGreaterThan(actors.length * 2);
  });
});

const repoRoot = join(import.meta.dirname, '..', '..');

/** A separate node process (tsx for the TypeScript sources) that appends `count` entries once told to go. */
function startAppender(path: string, actor: string, count: number) {
  const script = `
    import { openSqliteRegistry } from ${JSON.stringify(pathToFileURL(join(repoRoot, 'registry', 'index.ts')).href)};
    const registry = await openSqliteRegistry({ path: process.env.AUDIT_DB });
    process.stdout.write('ready\\n');
    await new Promise((resolve) => process.stdin.once('data', resolve));
    for (let n = 0; n < Number(process.env.AUDIT_COUNT); n += 1) {
      await registry.appendAudit({ actor: process.env.AUDIT_ACTOR, action: 'concurrent.append', result: 'ok', detail: { n } });
      // A tight loop would re-take the write lock before the others' busy handlers wake: let them in.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 2));
    }
    await registry.close();
    process.stdin.destroy();
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: repoRoot,
    env: { ...process.env, AUDIT_DB: path, AUDIT_ACTOR: actor, AUDIT_COUNT: String(count) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const state = {
    finished: false,
    ready: new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`appender ${actor} exited with ${code} before it was ready: ${stderr}`)));
    }),
    exited: once(child, 'exit').then(([code]) => {
      state.finished = true;
      if (code !== 0) throw new Error(`appender ${actor} failed with ${code}: ${stderr}`);
      return code as number;
    }),
    go: () => child.stdin.write('go\n'),
  };
  return state;
}
