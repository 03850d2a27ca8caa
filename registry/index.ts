export * from './registry-port.ts';
export * from './seed-defaults.ts';
export { openSqliteRegistry, type SqliteRegistryOptions } from './sqlite/sqlite-registry.ts';
