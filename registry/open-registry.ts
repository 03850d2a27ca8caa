import { type Clock, systemClock } from '../core/index.ts';
import { migrate } from './migrate.ts';
import { isPostgresUrl } from './postgres/connection-url.ts';
import { postgresDialect, type PostgresRegistryOptions } from './postgres/postgres-dialect.ts';
import type { Registry } from './registry-port.ts';
import { SqlRegistry } from './sql-registry.ts';
import { sqliteDialect } from './sqlite/sqlite-dialect.ts';
import type { StorageDialect } from './storage-dialect.ts';

export type { PostgresRegistryOptions } from './postgres/postgres-dialect.ts';

export interface SqliteRegistryOptions {
  /** Database file, or ':memory:' for a private in-process database (tests). */
  readonly path: string;
  readonly clock?: Clock;
}

export interface OpenRegistryOptions {
  readonly clock?: Clock;
  /** PostgreSQL only: the schema for fleetgate's tables (wins over `?schema=` in the URL). */
  readonly schema?: string;
  /** PostgreSQL only: connection errors the pool recovers from, for the log. */
  readonly onError?: (error: Error) => void;
  /** PostgreSQL only: pool timeouts and size. */
  readonly postgres?: Pick<PostgresRegistryOptions, 'connectTimeoutMs' | 'queryTimeoutMs' | 'maxConnections'>;
}

/** Opens (creating if needed) the embedded registry and brings its schema up to date. */
export async function openSqliteRegistry(options: SqliteRegistryOptions): Promise<Registry> {
  return opened(sqliteDialect(options.path), options.clock);
}

/** Opens the PostgreSQL registry: a connection pool on `url`, the schema created and migrated if needed. */
export async function openPostgresRegistry(options: PostgresRegistryOptions & { readonly clock?: Clock }): Promise<Registry> {
  return opened(await postgresDialect(options), options.clock);
}

async function opened(dialect: StorageDialect, clock: Clock = systemClock): Promise<Registry> {
  try {
    await migrate(dialect);
  } catch (error) {
    await dialect.close().catch(() => undefined);
    throw error;
  }
  return new SqlRegistry(dialect, clock);
}

/**
 * The registry for a target: a `postgres://` or `postgresql://` URL opens PostgreSQL (several processes
 * and hosts), anything else is a SQLite file path (or ':memory:'). Both are migrated on open.
 */
export async function openRegistry(target: string, options: OpenRegistryOptions = {}): Promise<Registry> {
  const { postgres, ...common } = options;
  if (!isPostgresUrl(target)) return openSqliteRegistry({ path: target, ...(options.clock === undefined ? {} : { clock: options.clock }) });
  return openPostgresRegistry({ ...postgres, ...common, url: target });
}
