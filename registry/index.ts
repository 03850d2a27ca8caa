export * from './registry-port.ts';
export * from './seed-defaults.ts';
export { openPostgresRegistry, openRegistry, openSqliteRegistry, type OpenRegistryOptions, type PostgresRegistryOptions, type SqliteRegistryOptions } from './open-registry.ts';
export { isPostgresUrl } from './postgres/connection-url.ts';
export { openRedisConnection, withTimeout } from './redis/redis-connection.ts';
export { createRedisEventBus, type RedisEventBus } from './redis/redis-event-bus.ts';
export { registerBrokerSessions, redisSessionDirectory, type RedisSessionRegistration } from './redis/redis-session-directory.ts';
