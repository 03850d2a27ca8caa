export * from "./registry-port.js";
export * from "./seed-defaults.js";
export { openPostgresRegistry, openRegistry, openSqliteRegistry } from "./open-registry.js";
export { isPostgresUrl } from "./postgres/connection-url.js";
