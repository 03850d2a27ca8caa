import type { Redis } from 'ioredis';
import type { SessionDirectory, SessionSummary } from '../../core/index.ts';
import { withTimeout } from './redis-connection.ts';

/**
 * Live sessions of a cluster in Redis: each broker keeps one hash (client id → session) that expires unless
 * the broker refreshes it, so a crashed broker's sessions disappear from listings within `ttlMs`.
 */
export interface RedisSessionRegistration {
  opened(session: SessionSummary): void;
  closed(clientId: string): void;
  /** Forgets this broker's sessions (clean shutdown). */
  close(): Promise<void>;
}

const keyOf = (prefix: string, brokerId: string) => `${prefix}:sessions:${brokerId}`;

interface StoredSession {
  readonly kind: SessionSummary['kind'];
  readonly certificateSerial: string;
  readonly remoteAddress: string | null;
  readonly connectedAt: string;
}

export function registerBrokerSessions(redis: Redis, options: { prefix: string; brokerId: string; ttlMs?: number; onError?: (error: Error) => void }): RedisSessionRegistration {
  const key = keyOf(options.prefix, options.brokerId);
  const ttlMs = options.ttlMs ?? 30_000;
  const report = (error: unknown) => options.onError?.(error instanceof Error ? error : new Error(String(error)));
  // Start from an empty hash: a broker restarting under the same id must not list sessions it lost.
  redis.del(key).catch(report);
  const refresh = setInterval(() => redis.pexpire(key, ttlMs).catch(report), Math.max(1_000, ttlMs / 3));
  refresh.unref();
  return {
    opened(session) {
      const stored: StoredSession = {
        kind: session.kind,
        certificateSerial: session.certificateSerial,
        remoteAddress: session.remoteAddress ?? null,
        connectedAt: session.connectedAt.toISOString(),
      };
      redis
        .multi()
        .hset(key, session.clientId, JSON.stringify(stored))
        .pexpire(key, ttlMs)
        .exec()
        .catch(report);
    },
    closed(clientId) {
      redis.hdel(key, clientId).catch(report);
    },
    async close() {
      clearInterval(refresh);
      await withTimeout(redis.del(key), 2_000, 'forgetting sessions').catch(report);
    },
  };
}

/** What the API lists: every broker's sessions; a client seen on two brokers (a takeover in flight) once, newest first. */
export function redisSessionDirectory(redis: Redis, options: { prefix: string; timeoutMs?: number }): SessionDirectory {
  return {
    async list() {
      const read = async () => {
        const sessions = new Map<string, SessionSummary>();
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${options.prefix}:sessions:*`, 'COUNT', 100);
          cursor = next;
          for (const key of keys) {
            const broker = key.slice(`${options.prefix}:sessions:`.length);
            const entries = await redis.hgetall(key);
            for (const [clientId, text] of Object.entries(entries)) {
              const stored = JSON.parse(text) as StoredSession;
              const session: SessionSummary = {
                clientId,
                kind: stored.kind,
                certificateSerial: stored.certificateSerial,
                remoteAddress: stored.remoteAddress ?? undefined,
                connectedAt: new Date(stored.connectedAt),
                broker,
              };
              const known = sessions.get(clientId);
              if (known === undefined || known.connectedAt < session.connectedAt) sessions.set(clientId, session);
            }
          }
        } while (cursor !== '0');
        return [...sessions.values()];
      };
      return withTimeout(read(), options.timeoutMs ?? 3_000, 'listing sessions');
    },
  };
}
