import type { Aedes, Client, PublishPacket } from 'aedes';
import type { TemplateLimits } from '../core/index.ts';
import { interceptClientPublishes, interceptParse, interceptReads, readNextBatch } from './aedes-internals.ts';
import { TokenBucket } from './token-bucket.ts';

/**
 * Per-connection ingress flow control. Aedes reads a whole socket chunk, parses every packet in it and
 * handles them concurrently; its own batch accounting leaks (each 'readable' event counts as a finished
 * packet), and a packet finished synchronously reads and parses the next chunk *inside* the current parse.
 * Under a flood that is unbounded memory and, in our flood runs (bench/RESULTS.md), `Maximum call stack size exceeded`.
 *
 * Here the socket's `read` is gated: while a connection has `maxInflightPublishes` PUBLISH packets not yet
 * handled, or owes its rate limit tokens, or is already inside a parse, `read` answers null and the bytes
 * stay in the kernel (TCP back-pressure reaches the device). Rate limits are token buckets per session:
 * QoS 0 over the limit is read and discarded (MQTT 3.1.1 has no negative acknowledgement, and an
 * authorizePublish error would close the connection), QoS 1/2 over the limit waits for its tokens before
 * it is acknowledged. A session that stays over its limit for `overLimitGraceMs` is reported to be closed.
 */
export interface IngressFlowControl {
  /**
   * Right after `aedes.handle(socket)`: gates the reads of this connection. `inspect` sees every chunk read
   * before the parser does (broker/frame-guard.ts); false withholds it and everything after. One wrapper
   * around `conn.read` for both, instead of one each.
   */
  attach(client: Client, inspect?: (chunk: Buffer) => boolean): void;
  /** In authorizePublish, once the ACL allowed the packet, instead of `callback(null)`. */
  admitPublish(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void;
  /** The session's limits changed: its token buckets are rebuilt from them at its next PUBLISH. */
  resetLimits(client: Client): void;
}

export interface IngressOptions {
  readonly limitsOf: (client: Client) => Required<TemplateLimits>;
  readonly maxInflightPublishes: number;
  readonly overLimitGraceMs: number;
  readonly onDropped: () => void;
  readonly onThrottled: () => void;
  /** The session kept publishing over its limit for the grace period; close it. Called once per session. */
  readonly onViolation: (client: Client, detail: { dropped: number; throttled: number; overLimitMs: number }) => void;
  readonly now?: () => number;
}

interface IngressState {
  inflight: number;
  parsing: number;
  /** `read` answered null: someone must wake the connection once the gate opens. */
  stalled: boolean;
  wakeScheduled: boolean;
  messages?: TokenBucket;
  bytes?: TokenBucket;
  overSince: number | undefined;
  lastViolation: number;
  dropped: number;
  throttled: number;
  reported: boolean;
  /** QoS 1/2 packets held for their tokens; made (with its 'close' listener) by the first one, as most sessions never are. */
  timers: Set<NodeJS.Timeout> | undefined;
}

/**
 * Marks a packet admitted but not yet published, whose completion gives back an in-flight slot of this
 * state. A property of the packet rather than a WeakMap entry per message: short-lived WeakMap keys are
 * ephemerons, extra work for every scavenge at tens of thousands of messages per second. The packet is
 * mqtt-packet's parsed object, which aedes hands on to publish and then drops (aedes copies it into its own
 * packet for delivery); nothing else reads this symbol.
 */
const countedBy = Symbol('fleetgate.ingress.counted');
type CountedPacket = PublishPacket & { [countedBy]?: IngressState | undefined };

/** Rate-limit debt is allowed to build up to this many seconds of traffic before the socket stops being read. */
const burstSeconds = 2;

export function createIngressFlowControl(aedes: Aedes, options: IngressOptions): IngressFlowControl {
  const now = options.now ?? (() => performance.now());
  const states = new WeakMap<Client, IngressState>();
  /** QoS 0 packets over the limit: authorized (so the connection stays up) but never forwarded. */
  const dropped = new WeakSet<PublishPacket>();

  // Every client PUBLISH ends in aedes' publish with the very packet object the authorizePublish hook saw
  // (broker/aedes-internals.ts). Dropped packets stop here; counted ones give their in-flight slot back when
  // aedes is done with them.
  interceptClientPublishes(aedes, (packet, client, done, publish) => {
    const state = (packet as CountedPacket)[countedBy];
    if (state === undefined) return publish(packet, client, done);
    (packet as CountedPacket)[countedBy] = undefined;
    if (dropped.has(packet)) {
      // Asynchronously, so that a chunk of dropped packets does not recurse into the next read.
      setImmediate(() => {
        release(client, state);
        done?.();
      });
      return;
    }
    publish(packet, client, (error) => {
      release(client, state);
      done?.(error);
    });
  });

  const gated = (state: IngressState, at: number) =>
    state.inflight >= options.maxInflightPublishes || (state.messages?.waitMs(at) ?? 0) > 0 || (state.bytes?.waitMs(at) ?? 0) > 0;

  function wake(client: Client | null, state: IngressState): void {
    if (client === null || !state.stalled || state.wakeScheduled) return;
    state.wakeScheduled = true;
    setImmediate(() => {
      state.wakeScheduled = false;
      if (client.closed || !state.stalled) return;
      state.stalled = false;
      // Only reads if no packet of the last chunk is still being handled.
      readNextBatch(client);
    });
  }

  function release(client: Client | null, state: IngressState): void {
    state.inflight--;
    wake(client, state);
  }

  function violation(client: Client, state: IngressState, at: number): void {
    if (state.overSince === undefined || at - state.lastViolation > 1000) state.overSince = at;
    state.lastViolation = at;
    const overLimitMs = at - state.overSince;
    if (!state.reported && overLimitMs >= options.overLimitGraceMs) {
      state.reported = true;
      options.onViolation(client, { dropped: state.dropped, throttled: state.throttled, overLimitMs: Math.round(overLimitMs) });
    }
  }

  return {
    attach(client, inspect) {
      const state: IngressState = { inflight: 0, parsing: 0, stalled: false, wakeScheduled: false, overSince: undefined, lastViolation: 0, dropped: 0, throttled: 0, reported: false, timers: undefined };
      states.set(client, state);
      interceptReads(client.conn, (read) => (size) => {
        if (state.parsing > 0 || gated(state, now())) {
          state.stalled = true;
          // Inside a parse, the gate opens as soon as the stack unwinds.
          if (state.parsing > 0 && !gated(state, now())) wake(client, state);
          return null;
        }
        const chunk = read(size);
        if (inspect === undefined || chunk === null || typeof chunk === 'string') return chunk;
        return inspect(chunk as Buffer) ? chunk : null;
      });
      interceptParse(client, (parse) => {
        state.parsing++;
        try {
          return parse();
        } finally {
          state.parsing--;
        }
      });
    },

    admitPublish(client, packet, callback) {
      const state = states.get(client);
      if (state === undefined) return callback(null);
      const at = now();
      if (state.messages === undefined || state.bytes === undefined) {
        const limits = options.limitsOf(client);
        state.messages = new TokenBucket(limits.publishPerSecond, limits.publishPerSecond * burstSeconds, at);
        state.bytes = new TokenBucket(limits.publishBytesPerSecond, limits.publishBytesPerSecond * burstSeconds, at);
      }
      const size = packet.payload.length;
      // QoS 2 is left to aedes' own inbound window (maxInflightInbound): a duplicate QoS 2 PUBLISH is
      // answered without publishing, so it would never give an in-flight slot back.
      if (packet.qos !== 2) {
        state.inflight++;
        (packet as CountedPacket)[countedBy] = state;
      }
      if (packet.qos === 0) {
        if (state.messages.tryTake(1, at) && state.bytes.tryTake(size, at)) return callback(null);
        dropped.add(packet);
        state.dropped++;
        options.onDropped();
        violation(client, state, at);
        return callback(null);
      }
      const waitMs = Math.max(state.messages.take(1, at), state.bytes.take(size, at));
      if (waitMs === 0) return callback(null);
      state.throttled++;
      options.onThrottled();
      violation(client, state, at);
      // Not acknowledged until the tokens are there; meanwhile the socket is not read (see gated). Each
      // held packet waits for its own reservation, so they are released in the order they came.
      const timer = setTimeout(() => {
        state.timers?.delete(timer);
        if (client.closed) return;
        callback(null);
        wake(client, state);
      }, waitMs);
      if (state.timers === undefined) {
        const timers = new Set<NodeJS.Timeout>();
        state.timers = timers;
        client.conn.once('close', () => {
          for (const held of timers) clearTimeout(held);
        });
      }
      state.timers.add(timer);
    },

    resetLimits(client) {
      const state = states.get(client);
      if (state === undefined) return;
      state.messages = undefined;
      state.bytes = undefined;
    },
  };
}
