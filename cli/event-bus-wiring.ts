import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createInProcessEventBus, type EventBus, type SessionDirectory } from '../core/index.ts';
import { createRedisEventBus, openRedisConnection, redisSessionDirectory } from '../cluster/index.ts';
import type { ServeConfig } from './config.ts';

export interface WiredEventBus {
  readonly events: EventBus;
  /** The Redis subscriber connection in cluster mode: brokers treat its loss as "cut off" (fail closed). */
  readonly subscriber: Redis | undefined;
}

/** In-process on one machine; Redis pub/sub when FLEETGATE_REDIS_URL is set, so every process sees every event. */
export async function wireEventBus(config: ServeConfig, log: Logger): Promise<WiredEventBus> {
  const onHandlerError = (error: unknown) => log.error({ err: error }, 'event handler failed');
  if (config.redisUrl === undefined) return { events: createInProcessEventBus(onHandlerError), subscriber: undefined };
  const bus = await createRedisEventBus({
    url: config.redisUrl,
    prefix: config.clusterName,
    onHandlerError,
    onConnectionError: (error) => log.warn({ err: error.message }, 'event bus: Redis unavailable'),
  });
  return { events: bus, subscriber: bus.subscriber };
}

/**
 * What `GET /v1/sessions` lists: with Redis, every broker's sessions (each reports its own there);
 * without it, `local` (the in-process broker of `serve`, or nothing for a lone `provisioning`).
 */
export function wireSessionDirectory(config: ServeConfig, local: SessionDirectory): { sessions: SessionDirectory; close(): void } {
  if (config.redisUrl === undefined) return { sessions: local, close: () => {} };
  const connection = openRedisConnection({ url: config.redisUrl, name: 'fleetgate-api-sessions' });
  return { sessions: redisSessionDirectory(connection, { prefix: config.clusterName }), close: () => connection.disconnect() };
}
