import type { Redis } from 'ioredis';
import type { EventBus, GatewayEvent, GatewayEventHandler } from '../core/index.ts';
import { openRedisConnection, withTimeout } from './redis-connection.ts';

export interface RedisEventBusOptions {
  readonly url: string;
  /** One cluster per prefix: channels and keys of other fleetgate installations on the same Redis are separate. */
  readonly prefix: string;
  readonly onHandlerError?: (error: unknown) => void;
  readonly onConnectionError?: (error: Error) => void;
  /** How long publish waits for Redis before giving up (the event is then lost; see below). */
  readonly publishTimeoutMs?: number;
}

export interface RedisEventBus extends EventBus {
  /** The subscriber connection, for health: events published while it was down were not received. */
  readonly subscriber: Redis;
}

/** Every event type, checked by the compiler: a type missing here would be dropped by every process on Redis. */
const eventTypes = new Set<string>(
  Object.keys({ 'device.status': true, 'policy.changed': true, 'template.changed': true, 'claim.revoked': true, 'trust.changed': true, 'rotation.notify': true } satisfies Record<GatewayEvent['type'], true>),
);

/**
 * The event bus on Redis pub/sub: every process of a cluster receives every event, including its own.
 * Pub/sub is at-most-once, so an event published while a broker was cut off from Redis never reaches it;
 * brokers therefore refuse new sessions while cut off and re-check every open session against the registry
 * when Redis comes back (broker/cluster-health). The registry, not the bus, is the source of truth.
 */
export async function createRedisEventBus(options: RedisEventBusOptions): Promise<RedisEventBus> {
  const channel = `${options.prefix}:events`;
  const onError = options.onConnectionError ?? (() => {});
  const publisher = openRedisConnection({ url: options.url, name: 'fleetgate-events-pub', onError });
  const subscriber = openRedisConnection({ url: options.url, name: 'fleetgate-events-sub', onError });
  const handlers = new Set<GatewayEventHandler>();

  subscriber.on('message', (from: string, text: string) => {
    if (from !== channel) return;
    const event = parseEvent(text);
    if (event === undefined) return; // not ours, or from a newer version: ignore rather than crash
    for (const handler of [...handlers]) {
      try {
        handler(event);
      } catch (error) {
        options.onHandlerError?.(error);
      }
    }
  });
  // ioredis re-subscribes by itself after a reconnect.
  await subscriber.subscribe(channel);

  return {
    subscriber,
    async publish(event) {
      // While Redis is away the command stays queued and goes out when it is back. The caller's change is
      // already committed to the registry, so it is not failed for this: brokers cut off from Redis refuse
      // new sessions and re-check open ones on reconnect.
      await withTimeout(publisher.publish(channel, JSON.stringify(event)), options.publishTimeoutMs ?? 2_000, `publishing ${event.type}`).catch((error: unknown) =>
        onError(error instanceof Error ? error : new Error(String(error))),
      );
    },
    subscribe(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    async close() {
      handlers.clear();
      await Promise.allSettled([publisher.quit(), subscriber.quit()]);
      publisher.disconnect();
      subscriber.disconnect();
    },
  };
}

function parseEvent(text: string): GatewayEvent | undefined {
  try {
    const value = JSON.parse(text) as { type?: unknown };
    return typeof value === 'object' && value !== null && eventTypes.has(value.type as string) ? (value as GatewayEvent) : undefined;
  } catch {
    return undefined;
  }
}
