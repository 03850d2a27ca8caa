export * from './registry-port.ts';
export * from './seed-defaults.ts';
export { openSqliteRegistry, type SqliteRegistryOptions } from './sqlite/sqlite-registry.ts';
export { openPostgresRegistry, type PostgresRegistryOptions } from './postgres/postgres-registry.ts';
export { isPostgresUrl } from './postgres/connection-url.ts';
export { openRegistry, type OpenRegistryOptions } from './open-registry.ts';
export { openRedisConnection, withTimeout } from './redis/redis-connection.ts';
export { createRedisEventBus, type RedisEventBus } from './redis/redis-event-bus.ts';
export { registerBrokerSessions, redisSessionDirectory, type RedisSessionRegistration } from './redis/redis-session-directory.ts';
