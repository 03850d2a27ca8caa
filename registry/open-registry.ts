import type { Clock } from '../core/index.ts';
import { isPostgresUrl } from './postgres/connection-url.ts';
import { openPostgresRegistry, type PostgresRegistryOptions } from './postgres/postgres-registry.ts';
import type { Registry } from './registry-port.ts';
import { openSqliteRegistry } from './sqlite/sqlite-registry.ts';

export interface OpenRegistryOptions {
  readonly clock?: Clock;
  /** PostgreSQL only: the schema for fleetgate's tables (wins over `?schema=` in the URL). */
  readonly schema?: string;
  /** PostgreSQL only: connection errors the pool recovers from, for the log. */
  readonly onError?: (error: Error) => void;
  /** PostgreSQL only: pool timeouts and size. */
  readonly postgres?: Pick<PostgresRegistryOptions, 'connectTimeoutMs' | 'queryTimeoutMs' | 'maxConnections'>;
}

/**
 * The registry for a target: a `postgres://` or `postgresql://` URL opens the PostgreSQL adapter (several
 * processes and hosts), anything else is a SQLite file path (or ':memory:'). Both are migrated on open.
 */
export async function openRegistry(target: string, options: OpenRegistryOptions = {}): Promise<Registry> {
  if (isPostgresUrl(target)) {
    return openPostgresRegistry({
      url: target,
      ...options.postgres,
      ...(options.schema === undefined ? {} : { schema: options.schema }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.onError === undefined ? {} : { onError: options.onError }),
    });
  }
  return openSqliteRegistry({ path: target, ...(options.clock === undefined ? {} : { clock: options.clock }) });
}
