import { once } from 'node:events';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ignoreRedisEmitterErrors } from '../aedes-internals.ts';
import { awaitLocalEcho } from './emit-backpressure.ts';
import { openRedisConnection, registerBrokerSessions, type RedisSessionRegistration } from '../../cluster/index.ts';

// Both are CommonJS without ESM entry points; aedes-persistence-redis has no typings.
const require = createRequire(import.meta.url);
const createRedisEmitter = require('mqemitter-redis') as (options: { subConn: Redis; pubConn: Redis; concurrency: number }) => unknown;
const createRedisPersistence = require('aedes-persistence-redis') as (options: { conn: Redis }) => unknown;

export interface RedisClusterOptions {
  readonly url: string;
  /** Keys and channels of this cluster (several fleetgate installations may share one Redis). */
  readonly prefix: string;
  /** This broker's name in the cluster: aedes' broker id and the owner of its session list. */
  readonly brokerId: string;
  readonly log: Logger;
  /** Further connections the broker depends on (the event bus subscriber): Redis is "up" only when all are. */
  readonly watch?: readonly { readonly name: string; readonly connection: Redis }[];
}

/**
 * What a broker needs to be one node of a cluster on Redis: aedes' message emitter (mqemitter-redis: every
 * publish crosses Redis pub/sub, at-most-once between nodes), its persistence (aedes-persistence-redis:
 * subscriptions, persistent sessions, QoS 1/2 queues, retained messages and wills), the shared session list,
 * and a health signal that the broker turns into "refuse new sessions" (fail closed).
 */
export interface BrokerCluster {
  readonly brokerId: string;
  /** Pass to Aedes.createBroker as `mq` and `persistence`. */
  readonly mq: unknown;
  readonly persistence: unknown;
  readonly sessions: RedisSessionRegistration;
  /** Why the cluster cannot be trusted right now, or undefined when every connection is ready. */
  unavailableReason(): string | undefined;
  /** Resolves once every connection is ready: listen only then, or the first devices get CONNACK 3. */
  whenReady(): Promise<void>;
  /** Called each time all connections are ready again after an outage (events may have been missed). */
  onRecovered(handler: () => void): void;
  close(): Promise<void>;
}

export function joinRedisCluster(options: RedisClusterOptions): BrokerCluster {
  const { log } = options;
  const errorLogged = new Set<string>();
  const open = (name: string, autoPipelining = false) =>
    openRedisConnection({
      url: options.url,
      name: `fleetgate-${options.brokerId}-${name}`,
      autoPipelining,
      onError: (error) => {
        // Every reconnect attempt fails the same way while Redis is down: log the first, not a flood.
        if (errorLogged.has(name)) return;
        errorLogged.add(name);
        log.error({ err: error.message, connection: name }, 'Redis connection failed; refusing new sessions until it is back');
      },
    });
  const subConn = open('mq-sub');
  // mqemitter-redis pipelines the connections it makes itself; ours must ask for it (one write per turn).
  const pubConn = open('mq-pub', true);
  const persistenceConn = open('persistence');
  const sessionsConn = open('sessions');
  const watched = [
    { name: 'mq-sub', connection: subConn },
    { name: 'mq-pub', connection: pubConn },
    { name: 'persistence', connection: persistenceConn },
    { name: 'sessions', connection: sessionsConn },
    ...(options.watch ?? []),
  ];

  // The same delivery window aedes gives its in-memory emitter (100). mqemitter-redis defaults to none: every
  // message of a burst read from Redis was delivered at once, filling the subscriber's bounded queue, which
  // then dropped QoS 0 and closed the subscriber (measured: 6× less QoS 0 and 5× less QoS 1 than with it).
  const mq = createRedisEmitter({ subConn, pubConn, concurrency: 100 });
  // mqemitter-redis re-emits connection errors on this emitter; an EventEmitter 'error' without a listener
  // would throw and take the broker down, so it is observed (the connections above already log).
  ignoreRedisEmitterErrors(mq);
  // Without it, ingress outruns this node's own subscriber connection and Redis drops it (see the file).
  const echo = awaitLocalEcho(mq, options.brokerId);
  const persistence = createRedisPersistence({ conn: persistenceConn });
  const sessions = registerBrokerSessions(sessionsConn, {
    prefix: options.prefix,
    brokerId: options.brokerId,
    onError: (error) => log.warn({ err: error.message }, 'could not update the shared session list'),
  });

  const unavailableReason = () => {
    const down = watched.find((entry) => entry.connection.status !== 'ready');
    return down === undefined ? undefined : `Redis connection ${down.name} is ${down.connection.status}`;
  };
  const recoveredHandlers: (() => void)[] = [];
  let wasDown = false;
  for (const { name, connection } of watched) {
    connection.on('close', () => {
      if (!wasDown) log.error({ connection: name }, 'lost Redis: refusing new sessions and acknowledged publishes until it is back');
      wasDown = true;
    });
    connection.on('ready', () => {
      errorLogged.delete(name);
      if (!wasDown || unavailableReason() !== undefined) return;
      wasDown = false;
      log.warn('Redis is back: accepting sessions again and re-checking the open ones against the registry');
      for (const handler of recoveredHandlers) handler();
    });
  }

  return {
    brokerId: options.brokerId,
    mq,
    persistence,
    sessions,
    unavailableReason,
    whenReady: async () => {
      await Promise.all(watched.map(({ connection }) => (connection.status === 'ready' ? undefined : once(connection, 'ready'))));
    },
    onRecovered: (handler) => void recoveredHandlers.push(handler),
    async close() {
      echo.close();
      await sessions.close();
      // aedes closes mq and persistence (and with them their connections) in aedes.close().
      sessionsConn.disconnect();
    },
  };
}
