import { Redis } from 'ioredis';

export interface RedisConnectionOptions {
  /** `redis://[user:password@]host:port[/db]`. */
  readonly url: string;
  /** Shown in logs and in CLIENT LIST, e.g. `fleetgate-broker-events`. */
  readonly name: string;
  readonly onError?: (error: Error) => void;
  /** Batch the commands issued in one event-loop turn into one write (high-rate PUBLISH). */
  readonly autoPipelining?: boolean;
}

/**
 * One Redis connection as every fleetgate component needs it: reconnects forever with capped backoff, and
 * keeps commands issued while disconnected queued until it is back (maxRetriesPerRequest: null). That queue
 * is what lets a message already acknowledged to a device survive a Redis restart; callers that must not
 * wait (health checks, event publishing) put their own timeout around a command.
 */
export function openRedisConnection(options: RedisConnectionOptions): Redis {
  const connection = new Redis(options.url, {
    connectionName: options.name,
    maxRetriesPerRequest: null,
    connectTimeout: 3_000,
    // 50 ms, 100 ms, … capped at 2 s: a restarted Redis is found again within 2 s.
    retryStrategy: (attempt) => Math.min(attempt * 50, 2_000),
    lazyConnect: false,
    enableAutoPipelining: options.autoPipelining ?? false,
  });
  // ioredis emits 'error' on every failed reconnect; without a listener Node would crash the process.
  connection.on('error', (error: Error) => options.onError?.(error));
  return connection;
}

/** Resolves with `value` or rejects after `ms`: Redis commands queue while disconnected, callers may not wait. */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: Redis did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
