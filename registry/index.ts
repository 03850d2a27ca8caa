export * from './registry-port.ts';
export * from './seed-defaults.ts';
export { openPostgresRegistry, openRegistry, openSqliteRegistry, type OpenRegistryOptions, type PostgresRegistryOptions, type SqliteRegistryOptions } from './open-registry.ts';
export { isPostgresUrl } from './postgres/connection-url.ts';
