import type { Redis } from 'ioredis';
import type { SessionDirectory, SessionSummary } from '../core/index.ts';
import { withTimeout } from './redis-connection.ts';

/**
 * Live sessions of a cluster in Redis: each broker keeps one hash (client id → session) that expires unless
 * the broker refreshes it, so a crashed broker's sessions disappear from listings within `ttlMs`.
 */
export interface RedisSessionRegistration {
  /** `key`: the client id the broker knows the session by (claim sessions have their own namespace). */
  opened(key: string, session: SessionSummary): void;
  closed(key: string): void;
  /** Whether any broker of the cluster lists a session with this client id now. */
  isOpen(clientId: string): Promise<boolean>;
  /** Forgets this broker's sessions (clean shutdown). */
  close(): Promise<void>;
}

const keyOf = (prefix: string, brokerId: string) => `${prefix}:sessions:${brokerId}`;

interface StoredSession {
  /** As shown to operators; absent in entries written before it was stored (the key was the client id). */
  readonly clientId?: string;
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
    opened(sessionKey, session) {
      const stored: StoredSession = {
        clientId: session.clientId,
        kind: session.kind,
        certificateSerial: session.certificateSerial,
        remoteAddress: session.remoteAddress ?? null,
        connectedAt: session.connectedAt.toISOString(),
      };
      redis
        .multi()
        .hset(key, sessionKey, JSON.stringify(stored))
        .pexpire(key, ttlMs)
        .exec()
        .catch(report);
    },
    closed(sessionKey) {
      redis.hdel(key, sessionKey).catch(report);
    },
    async isOpen(clientId) {
      const look = async () => {
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${options.prefix}:sessions:*`, 'COUNT', 100);
          cursor = next;
          for (const brokerKey of keys) if ((await redis.hexists(brokerKey, clientId)) === 1) return true;
        } while (cursor !== '0');
        return false;
      };
      return withTimeout(look(), 3_000, 'looking up a session');
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
            for (const [sessionKey, text] of Object.entries(entries)) {
              const stored = JSON.parse(text) as StoredSession;
              const clientId = stored.clientId ?? sessionKey;
              const session: SessionSummary = {
                clientId,
                kind: stored.kind,
                certificateSerial: stored.certificateSerial,
                remoteAddress: stored.remoteAddress ?? undefined,
                connectedAt: new Date(stored.connectedAt),
                broker,
              };
              const known = sessions.get(sessionKey);
              if (known === undefined || known.connectedAt < session.connectedAt) sessions.set(sessionKey, session);
            }
          }
        } while (cursor !== '0');
        return [...sessions.values()];
      };
      return withTimeout(read(), options.timeoutMs ?? 3_000, 'listing sessions');
    },
  };
}
