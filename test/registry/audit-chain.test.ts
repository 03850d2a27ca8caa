import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteRegistry, type Registry } from '../../registry/index.ts';
import { describeAuditChainContract } from './audit-chain-contract.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * Tampering with the SQLite audit log the way someone with the file would: a raw connection, the
 * append-only triggers dropped, rows changed or removed. Each break must be reported at the right entry:
 * the cases every database shares are the contract (audit-chain-contract.ts); SQLite's own follow.
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
function tamper<T>(path: string, work: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    db.exec('DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;');
    return work(db);
  } finally {
    db.close();
  }
}

describeAuditChainContract('sqlite', {
  refuseInserts: {
    block: "CREATE TRIGGER audit_log_refuse_insert BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'inserts refused for the test'); END",
    unblock: 'DROP TRIGGER audit_log_refuse_insert',
  },
  async open() {
    const path = freshPath();
    const registry = await openSqliteRegistry({ path });
    return {
      registry,
      tamper: {
        async exec(sql) {
          tamper(path, (db) => db.exec(sql));
        },
        async rows() {
          const rows = tamper(path, (db) => db.prepare<[], RawAuditRow>('SELECT * FROM audit_log ORDER BY id').all());
          return rows.map((row) => ({ ...row, deviceId: row.device_id, prevHash: row.prev_hash }));
        },
        async rewrite(id, values) {
          tamper(path, (db) => db.prepare('UPDATE audit_log SET detail = COALESCE(?, detail), prev_hash = ?, hash = ? WHERE id = ?').run(values.detail ?? null, values.prevHash, values.hash, id));
        },
        async resetCounter(to) {
          tamper(path, (db) => db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit_log'").run(to));
        },
        async forge(id) {
          const insert = "INSERT INTO audit_log (id, at, actor, action, result, prev_hash, hash) VALUES (?, '2025-01-01T00:00:00.000Z', 'system', 'forged', 'ok', ?, ?)";
          tamper(path, (db) => db.prepare(insert).run(id, '0'.repeat(64), 'f'.repeat(64)));
        },
      },
    };
  },
});

describe('audit hash chain (sqlite)', () => {
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
