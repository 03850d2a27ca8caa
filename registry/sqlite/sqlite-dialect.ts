import Database from 'better-sqlite3';
import { CompiledQuery, Kysely, sql, type SqliteDatabase, SqliteDialect } from 'kysely';
import { chmodSync, closeSync, existsSync, openSync, realpathSync } from 'node:fs';
import { storableText } from '../audit-chain.ts';
import { type AuditTip, auditTipQuery, type StorageDialect, type Tables } from '../storage-dialect.ts';
import { steps } from './schema-steps.ts';

const busyTimeoutMs = 5_000;
const insertAuditSql = 'INSERT INTO audit_log (id, at, actor, action, result, code, device_id, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
// sqlite_sequence keeps the highest AUTOINCREMENT id even after rows are removed.
const auditCounter = "max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), COALESCE((SELECT max(id) FROM audit_log), 0))";

/**
 * The embedded database: one file, shared safely by several processes on one host (WAL readers never
 * block the writer; writers wait up to the busy timeout); beyond one host, use PostgreSQL. Kysely holds
 * the one connection for a whole write, so statements of concurrent calls never interleave.
 */
export function sqliteDialect(path: string): StorageDialect {
  const onDisk = path !== ':memory:' && path !== '';
  if (onDisk) ownerOnly(path, { create: true });
  const database = new Database(path);
  try {
    database.pragma('journal_mode = WAL');
    // SQLite gives new -wal and -shm files the database file's mode; files left by a crash keep their own.
    if (onDisk) for (const suffix of ['-wal', '-shm']) ownerOnly(path + suffix, { create: false });
    // Per connection and off by default in SQLite: without it the REFERENCES clauses are decoration.
    database.pragma('foreign_keys = ON');
    database.pragma(`busy_timeout = ${busyTimeoutMs}`);
    // synchronous stays FULL (the default): a certificate handed to a device must survive a power cut.
  } catch (error) {
    database.close();
    throw error;
  }
  const file = onDisk ? realpathSync(path) : database;
  return {
    db: new Kysely<Tables>({ dialect: new SqliteDialect({ database: withStatementCache(database) }) }),
    // IMMEDIATE takes the write lock up front: a DEFERRED transaction that reads and then writes can fail
    // with SQLITE_BUSY when another process committed in between, and busy_timeout does not retry that case.
    async beginWrite(connection) {
      await connection.executeQuery(CompiledQuery.raw('BEGIN IMMEDIATE'));
      return (await connection.executeQuery<AuditTip>(CompiledQuery.raw(auditTipQuery(auditCounter)))).rows[0] as AuditTip;
    },
    queueWrite: (work) => queued(file, work),
    async beginMigration(connection) {
      await connection.executeQuery(CompiledQuery.raw('BEGIN IMMEDIATE'));
    },
    // better-sqlite3 prepares one statement at a time; exec runs a script, on the connection Kysely holds.
    async runScript(_connection, script) {
      database.exec(script);
    },
    async tableExists(connection, name) {
      const { rows } = await sql`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ${name}`.execute(connection);
      return rows.length > 0;
    },
    migrationSchema: undefined,
    steps,
    legacySteps: 4,
    auditCounter,
    // One prepared statement (the same text every time), run per row: a batch of queued entries costs one
    // statement execution per row, not a query built by Kysely per row.
    async insertAudit(connection, rows) {
      for (const row of rows) {
        await connection.executeQuery(CompiledQuery.raw(insertAuditSql, [row.id, row.at, row.actor, row.action, row.result, row.code, row.device_id, row.detail, row.prev_hash, row.hash]));
      }
    },
    insertionOrder: 'rowid',
    // Times are ISO-8601 text; julianday() reads them (fractional days since 4714 BC: only differences matter).
    epochSeconds: (column) => `((julianday(${column}) - 2440587.5) * 86400.0)`,
    storableText,
    mapError: (error) => error,
    // Through the write queue: a write of this process in flight finishes (or fails) before the file closes.
    close: () => queued(file, async () => {
      if (!database.open) return;
      // Lets SQLite refresh planner statistics it found stale during this connection's lifetime.
      database.pragma('optimize');
      database.close();
    }),
  };
}

/**
 * Kysely prepares every query it runs; preparing costs more than running most of the registry's statements
 * (the broker's admission lookup ran at a fifth of its speed), so prepared statements are kept per SQL text.
 * The texts are Kysely's compiled queries, with values bound as parameters: a bounded, small set.
 */
function withStatementCache(database: Database.Database): SqliteDatabase {
  const statements = new Map<string, Database.Statement>();
  return {
    close: () => database.close(),
    prepare(text: string) {
      let statement = statements.get(text);
      if (statement === undefined) {
        statement = database.prepare(text);
        if (statements.size < maxCachedStatements) statements.set(text, statement);
      }
      return statement;
    },
  };
}

const maxCachedStatements = 500;

/**
 * better-sqlite3 is synchronous: a connection waiting (busy_timeout) for the write lock another connection
 * of this same process holds would block the event loop that connection needs to commit, and time out. So
 * the writes of every connection in this process to one file queue here first; other processes wait in
 * SQLite, each on its own thread.
 */
const writeQueues = new Map<unknown, Promise<unknown>>();

function queued<T>(file: unknown, work: () => Promise<T>): Promise<T> {
  const run = (writeQueues.get(file) ?? Promise.resolve()).then(work, work);
  const tail = run.then(settled, settled);
  writeQueues.set(file, tail);
  void tail.then(() => writeQueues.get(file) === tail && writeQueues.delete(file));
  return run;
}

const settled = (): void => undefined;

/**
 * The registry file holds every identity, token hash and the audit trail: owner read/write only (README
 * "Data directory"), whatever the umask. SQLite would create it 0644; creating it first with 0600 and
 * chmod-ing also tightens a database an older version left world-readable.
 */
function ownerOnly(path: string, options: { create: boolean }): void {
  if (options.create) closeSync(openSync(path, 'a', 0o600));
  else if (!existsSync(path)) return;
  chmodSync(path, 0o600);
}
