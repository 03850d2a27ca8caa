import type { AedesPublishPacket, Client } from 'aedes';
import { type Deliver, isRetainedReplay, wrapDelivery } from './aedes-internals.ts';
import { callSoon } from './call-soon.ts';

/**
 * Bounds what is queued towards one subscriber. Aedes hands each message to `client.deliver0` /
 * `client.deliverQoS` from the shared emitter (mqemitter, 100 messages in flight for the whole broker), and
 * only calls back once the socket has taken the bytes: one subscriber that stops reading holds those slots
 * until its drain timeout, and everything behind it, from every device, piles up in the emitter's queue.
 *
 * Here delivery is decoupled: the emitter is released at once, and this subscriber's own queue is counted
 * (messages and bytes handed to aedes but not yet written to its socket). Over the limit, QoS 0 is dropped
 * and counted; QoS 1/2 are still queued up to twice the limit, and beyond that the subscriber is closed
 * (a persistent session gets them again from its stored queue when it reconnects). A subscriber that stays
 * over its limit for the grace period is closed too, rather than holding memory for everyone.
 *
 * The byte budget of QoS 0 also counts what really waits in the socket's write buffer (`writableLength`:
 * bytes Node holds for a peer that does not read, whatever put them there: retained replays, acknowledgements,
 * the 2-byte headers our estimate leaves out), as Mosquitto's `max_queued_bytes` does for its queue.
 */
export interface OutboundQueueOptions {
  readonly limitsOf: (client: Client) => { readonly outboundQueueMessages: number; readonly outboundQueueBytes: number };
  readonly overLimitGraceMs: number;
  readonly onDropped: (qos: 0 | 1 | 2) => void;
  /** Called once per session: close it. */
  readonly onTooSlow: (client: Client, detail: { queuedMessages: number; queuedBytes: number; dropped: number; overLimitMs: number }) => void;
  readonly now?: () => number;
}

/** Rough bytes a PUBLISH takes on the wire: enough to bound memory, cheaper than encoding it. */
const sizeOf = (packet: AedesPublishPacket) => (packet.payload?.length ?? 0) + Buffer.byteLength(packet.topic) + 8;

const performanceNow = () => performance.now();

/**
 * One subscriber's queue. A class, not a set of closures: one object per connection instead of six
 * functions and their shared context (bench/memory-per-connection.ts measures what a connection costs).
 */
class OutboundQueue {
  messages = 0;
  bytes = 0;
  dropped = 0;
  overSince: number | undefined = undefined;
  reported = false;

  constructor(
    readonly client: Client,
    readonly options: OutboundQueueOptions,
    readonly now: () => number,
    readonly original: { readonly deliver0: Deliver; readonly deliverQoS: Deliver },
  ) {}

  overBy(factor: number, size: number): boolean {
    const limits = this.options.limitsOf(this.client);
    return this.messages + 1 > limits.outboundQueueMessages * factor || this.bytes + size > limits.outboundQueueBytes * factor;
  }

  /** Bytes waiting in the socket's write buffer (0 for a stream that does not say). */
  socketBacklog(): number {
    return (this.client.conn as { writableLength?: number }).writableLength ?? 0;
  }

  tooSlow(): void {
    if (this.reported) return;
    this.reported = true;
    const at = this.now();
    this.options.onTooSlow(this.client, { queuedMessages: this.messages, queuedBytes: Math.max(this.bytes, this.socketBacklog()), dropped: this.dropped, overLimitMs: Math.round(at - (this.overSince ?? at)) });
  }

  over(): void {
    const at = this.now();
    this.overSince ??= at;
    if (at - this.overSince >= this.options.overLimitGraceMs) this.tooSlow();
  }

  /** Counted before `over`/`tooSlow` read it; the emitter goes on asynchronously, as for a queued message. */
  drop(qos: 0 | 1 | 2): void {
    this.dropped++;
    this.options.onDropped(qos);
  }

  queue(deliver: Deliver, packet: AedesPublishPacket, size: number, callback: () => void): void {
    this.messages++;
    this.bytes += size;
    deliver(packet, () => {
      this.messages--;
      this.bytes -= size;
      if (this.overSince !== undefined && !this.overBy(1, 0)) this.overSince = undefined;
    });
    // The emitter goes on at once; asynchronously, so that it does not recurse into its own queue (one
    // Immediate per loop turn for all deliveries: broker/call-soon.ts).
    callSoon(callback);
  }

  deliver0(packet: AedesPublishPacket, callback: () => void): void {
    const size = sizeOf(packet);
    if (this.overBy(1, size) || this.socketBacklog() + size > this.options.limitsOf(this.client).outboundQueueBytes) {
      this.drop(0);
      this.over();
      callSoon(callback);
      return;
    }
    this.queue(this.original.deliver0, packet, size, callback);
  }

  deliverQoS(packet: AedesPublishPacket, callback: () => void): void {
    // Retained messages sent on SUBSCRIBE come one at a time from a stream that waits for each write
    // (lib/handlers/subscribe.js): the socket already bounds them, and none may be lost to the limit.
    if (isRetainedReplay(packet)) return (packet.qos === 0 ? this.original.deliver0 : this.original.deliverQoS)(packet, callback);
    // aedes downgrades a QoS 0 message by calling deliver0 itself; count it once, there.
    if (packet.qos === 0) return this.deliver0(packet, callback);
    const size = sizeOf(packet);
    if (this.overBy(1, size)) this.over();
    if (this.overBy(2, size)) {
      this.drop(packet.qos);
      this.tooSlow();
      callSoon(callback);
      return;
    }
    this.queue(this.original.deliverQoS, packet, size, callback);
  }
}

/** Right after `aedes.handle(socket)`, before any subscription captures the deliver functions. */
export function limitOutboundQueue(client: Client, options: OutboundQueueOptions): void {
  wrapDelivery(client, (original) => {
    const queue = new OutboundQueue(client, options, options.now ?? performanceNow, original);
    return { deliver0: (packet, callback) => queue.deliver0(packet, callback), deliverQoS: (packet, callback) => queue.deliverQoS(packet, callback) };
  });
}
