export { openRedisConnection, withTimeout } from './redis-connection.ts';
export { createRedisEventBus, type RedisEventBus } from './redis-event-bus.ts';
export { registerBrokerSessions, redisSessionDirectory, type RedisSessionRegistration } from './redis-session-directory.ts';
