import { systemClock } from "../core/index.js";
import { migrate } from "./migrate.js";
import { isPostgresUrl } from "./postgres/connection-url.js";
import { postgresDialect } from "./postgres/postgres-dialect.js";
import { SqlRegistry } from "./sql-registry.js";
import { sqliteDialect } from "./sqlite/sqlite-dialect.js";
/** Opens (creating if needed) the embedded registry and brings its schema up to date. */
export async function openSqliteRegistry(options) {
    return opened(sqliteDialect(options.path), options.clock);
}
/** Opens the PostgreSQL registry: a connection pool on `url`, the schema created and migrated if needed. */
export async function openPostgresRegistry(options) {
    return opened(await postgresDialect(options), options.clock);
}
async function opened(dialect, clock = systemClock) {
    try {
        await migrate(dialect);
    }
    catch (error) {
        await dialect.close().catch(() => undefined);
        throw error;
    }
    return new SqlRegistry(dialect, clock);
}
/**
 * The registry for a target: a `postgres://` or `postgresql://` URL opens PostgreSQL (several processes
 * and hosts), anything else is a SQLite file path (or ':memory:'). Both are migrated on open.
 */
export async function openRegistry(target, options = {}) {
    const { postgres, ...common } = options;
    if (!isPostgresUrl(target))
        return openSqliteRegistry({ path: target, ...(options.clock === undefined ? {} : { clock: options.clock }) });
    return openPostgresRegistry({ ...postgres, ...common, url: target });
}
