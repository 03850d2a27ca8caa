import { CompiledQuery, type DatabaseIntrospector, Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient, sql, type TableMetadata } from 'kysely';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { FleetgateError } from '../../core/index.ts';
import { storableText } from '../audit-chain.ts';
import { type AuditTip, auditTipQuery, type StorageDialect, type Tables } from '../storage-dialect.ts';
import { parsePostgresUrl } from './connection-url.ts';
import { steps } from './schema-steps.ts';

export interface PostgresRegistryOptions {
  /** `postgres://user:password@host:port/database`, optionally with `?schema=NAME`. */
  readonly url: string;
  /** Schema holding fleetgate's tables, created if missing; wins over `?schema=`. Default: the role's current schema (usually public). */
  readonly schema?: string;
  /**
   * Connection trouble the pool survives by itself (an idle connection dropped by a restarting server, …).
   * Calls that hit it reject on their own; this is for the log. Default: a process warning.
   */
  readonly onError?: (error: Error) => void;
  /** Giving up on opening a connection (server down, unreachable); default 3000 ms. */
  readonly connectTimeoutMs?: number;
  /** Giving up on one statement, server side and client side (a half-dead network); default 10000 ms. */
  readonly queryTimeoutMs?: number;
  /** Pool size; default 10. */
  readonly maxConnections?: number;
}

/**
 * PostgreSQL for several processes and hosts. Writes are serialised across every process sharing the
 * schema by one transaction-scoped advisory lock, taken before anything is read: exactly what SQLite's
 * single writer gives the embedded registry. Reads never take it (READ COMMITTED, a fresh snapshot per
 * statement). Measured against SERIALIZABLE with retries in bench/registry-write-lock.ts.
 */
export async function postgresDialect(options: PostgresRegistryOptions): Promise<StorageDialect> {
  const { connectionString, schema: requested } = parsePostgresUrl(options.url, options.schema);
  const queryTimeoutMs = options.queryTimeoutMs ?? 10_000;
  const onError = options.onError ?? ((error: Error) => process.emitWarning(`fleetgate registry: PostgreSQL connection error: ${error.message}`, 'FleetgateRegistryWarning'));
  const pool = new pg.Pool({
    connectionString,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3_000,
    // The server cancels a statement that runs too long; the client gives up a little later on a
    // connection that stopped answering at all. Either way the call rejects and the caller fails closed.
    statement_timeout: queryTimeoutMs,
    query_timeout: queryTimeoutMs + 2_000,
    // A process stuck inside a transaction must not hold the write lock for ever.
    idle_in_transaction_session_timeout: queryTimeoutMs,
    keepAlive: true,
    max: options.maxConnections ?? 10,
    application_name: 'fleetgate',
    // Every pooled connection resolves table names in the registry's schema (names are checked identifiers).
    ...(requested === undefined ? {} : { options: `-c search_path=${requested}` }),
  });
  // An idle connection that dies emits here; without a listener the process would crash.
  pool.on('error', (error) => onError(error));
  let schema: string;
  try {
    const { rows } = await pool.query<{ schema: string | null }>('SELECT current_schema() AS schema');
    schema = requested ?? rows[0]?.schema ?? noSchema();
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
  const db = new Kysely<Tables>({ dialect: new OneSchemaDialect({ pool: guarded(pool, onError) }, schema) });
  return {
    db,
    // One round trip: BEGIN, the lock, then the tip (each statement of the three reads its own snapshot, so
    // the tip is read after the lock is held).
    async beginWrite(connection) {
      const begin = `BEGIN; SELECT pg_advisory_xact_lock(${advisoryLockKey('write', schema)}); ${auditTipQuery(auditCounter)}`;
      return (await connection.executeQuery<AuditTip>(CompiledQuery.raw(begin))).rows[0] as AuditTip;
    },
    // The advisory lock queues writers; each holds its own pooled connection meanwhile.
    queueWrite: (work) => work(),
    async beginMigration(connection) {
      await connection.executeQuery(CompiledQuery.raw(`BEGIN; SELECT pg_advisory_xact_lock(${advisoryLockKey('migrate', schema)})`));
      // Looked up before anything is created: CREATE … IF NOT EXISTS checks the CREATE privilege even when
      // there is nothing to do, and a role a DBA gave only its schema's privileges must still start. Under
      // the lock, so two processes cannot both find the schema missing.
      const { rows } = await sql`SELECT 1 FROM pg_namespace WHERE nspname = ${schema}`.execute(connection);
      if (rows.length === 0) await connection.executeQuery(CompiledQuery.raw(`CREATE SCHEMA ${quoteIdentifier(schema)}`));
      await connection.executeQuery(CompiledQuery.raw(`SET LOCAL search_path TO ${quoteIdentifier(schema)}`));
    },
    // Without parameters node-postgres sends the simple protocol, which runs several statements.
    async runScript(connection, script) {
      await connection.executeQuery(CompiledQuery.raw(script));
    },
    async tableExists(connection, name) {
      return (await connection.introspection.getTables()).some((table) => table.name === name);
    },
    migrationSchema: schema,
    steps,
    legacySteps: 3,
    auditCounter,
    // A batch of queued entries in few statements (a round trip each): many rows per INSERT, under the
    // limit of 65535 bound parameters.
    async insertAudit(connection, rows) {
      for (let start = 0; start < rows.length; start += auditRowsPerInsert) {
        await connection
          .with('entry', (db) => db.insertInto('audit_log').values(rows.slice(start, start + auditRowsPerInsert)).returning('id'))
          .updateTable('audit_sequence')
          .set({ last_id: sql<number>`(SELECT max(id) FROM entry)` })
          .execute();
      }
    },
    insertionOrder: 'seq',
    epochSeconds: (column) => `EXTRACT(EPOCH FROM ${column})`,
    storableText: pgText,
    mapError,
    close: () => db.destroy(),
  };
}

/**
 * Kysely's Migrator asks the introspector whether its tables exist. PostgreSQL's own introspector reads
 * every schema of the database, which is slow with many and fails when one is dropped meanwhile: this one
 * looks at the registry's schema only.
 */
class OneSchemaDialect extends PostgresDialect {
  readonly #schema: string;

  constructor(config: ConstructorParameters<typeof PostgresDialect>[0], schema: string) {
    super(config);
    this.#schema = schema;
  }

  override createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    const schema = this.#schema;
    const getTables = async (): Promise<TableMetadata[]> => {
      const { rows } = await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables WHERE schemaname = ${schema}`.execute(db);
      return rows.map((row) => ({ name: row.name, schema, isView: false, columns: [] }));
    };
    return {
      getSchemas: async () => (await sql<{ name: string }>`SELECT nspname AS name FROM pg_namespace WHERE nspname = ${schema}`.execute(db)).rows,
      getTables,
      getMetadata: async () => ({ tables: await getTables() }),
    };
  }
}

/** Ten parameters per row. */
const auditRowsPerInsert = 1_000;

// audit_sequence is to this log what sqlite_sequence is to SQLite's: it survives removed rows.
const auditCounter = 'GREATEST((SELECT last_id FROM audit_sequence), COALESCE((SELECT max(id) FROM audit_log), 0))';

function noSchema(): never {
  throw new FleetgateError('CONFIG_INVALID', { message: 'The database role has no usable schema in its search_path; add ?schema=NAME to the database URL.' });
}

/**
 * The 64-bit key of one of fleetgate's advisory locks, as a SQL integer literal. Advisory locks are
 * database-wide, so the key includes the schema: registries in different schemas of one database (a test
 * run, two installations) never wait for each other. A hash, not a constant, so it stays clear of keys
 * other applications sharing the database might pick.
 */
export function advisoryLockKey(purpose: 'migrate' | 'write', schema: string): string {
  return createHash('sha256').update(`fleetgate:${purpose}:${schema}`).digest().readBigInt64BE(0).toString();
}

/**
 * The pool as Kysely sees it, with two guards. A connection on which a statement got no answer (server
 * gone, timeout) is destroyed when released instead of going back to the pool, where a late reply would
 * be read as the answer to someone else's statement; later statements on it fail at once, so a rollback
 * does not wait out another timeout. And PostgreSQL text cannot hold NUL, so nothing stored contains one:
 * a lookup by such a value matches nothing (as on SQLite) instead of failing with an encoding error.
 */
function guarded(pool: pg.Pool, onError: (error: Error) => void): PostgresPool {
  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect();
      let broken: Error | undefined;
      // Inside a write (BEGIN … COMMIT/ROLLBACK) a NUL reaches PostgreSQL and fails as 22021 (REQUEST_INVALID),
      // as it always did; only plain reads answer "no such row" for it (text can never hold a NUL).
      let inWrite = false;
      // While checked out, a connection that dies between statements emits 'error' on the client; the pool
      // listens only to idle ones. The failing statement rejects on its own; this only keeps the process up.
      const onClientError = (error: Error) => onError(error);
      client.on('error', onClientError);
      return {
        async query(text: string, values: readonly unknown[]) {
          if (broken !== undefined) throw broken;
          if (/^\s*BEGIN\b/i.test(text)) inWrite = true;
          const ends = /^\s*(COMMIT|ROLLBACK)\b/i.test(text);
          if (!inWrite && /^\s*select/i.test(text) && values.some((value) => typeof value === 'string' && value.includes('\u0000'))) return { command: 'SELECT', rowCount: 0, rows: [] };
          try {
            const result = await client.query(text, values as unknown[]);
            if (ends) inWrite = false; // only once it worked: a failed ROLLBACK leaves the connection unusable
            // Several statements in one query (beginWrite) answer with the last one's rows.
            return Array.isArray(result) ? result.at(-1) : result;
          } catch (error) {
            if (!(error instanceof pg.DatabaseError)) broken = error instanceof Error ? error : new Error(String(error));
            throw error;
          }
        },
        release(destroy?: boolean) {
          client.removeListener('error', onClientError);
          // A connection given back inside a transaction (its ROLLBACK failed) is closed, never pooled.
          client.release(broken ?? (inWrite || destroy));
        },
      } as unknown as PostgresPoolClient;
    },
    end: () => pool.end(),
  };
}

/**
 * Text as PostgreSQL will give it back: well-formed (storableText) and without NUL, which a text column
 * cannot hold. NUL becomes U+FFFD, so the hash is computed over what is stored. (SQLite keeps NUL.)
 */
function pgText(value: string): string {
  return storableText(value).replaceAll('\u0000', '\ufffd');
}

/**
 * Database refusals that correspond to a check the registry makes itself get that check's code. The write
 * lock makes them unreachable by races; they remain as a second line (a row written by hand, a future code
 * path). Anything else is passed on as it is: the edges answer INTERNAL.
 */
const constraintCodes: Readonly<Record<string, FleetgateError['code']>> = {
  devices_pkey: 'DEVICE_EXISTS',
  operator_tokens_pkey: 'OPERATOR_TOKEN_EXISTS',
  devices_template_fkey: 'TEMPLATE_NOT_FOUND',
  claims_template_fkey: 'TEMPLATE_NOT_FOUND',
  allowlist_template_fkey: 'TEMPLATE_NOT_FOUND',
  devices_policy_fkey: 'POLICY_NOT_FOUND',
  templates_policy_fkey: 'POLICY_NOT_FOUND',
};

function mapError(error: unknown): unknown {
  if (!(error instanceof pg.DatabaseError)) return error;
  // 23505 unique_violation, 23503 foreign_key_violation.
  const code = (error.code === '23505' || error.code === '23503') && error.constraint !== undefined ? constraintCodes[error.constraint] : undefined;
  if (code !== undefined) return new FleetgateError(code, { detail: { constraint: error.constraint }, cause: error });
  // 22021: a NUL in text (names are free-form in a few places); SQLite would have stored it.
  if (error.code === '22021') return new FleetgateError('REQUEST_INVALID', { message: 'Text values must not contain NUL characters.', cause: error });
  return error;
}

/** A schema name as SQL: `current_schema()` (a role's default) is not checked like `?schema=`, so quote it. */
function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
