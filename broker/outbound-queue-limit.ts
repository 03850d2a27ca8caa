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

/** Right after `aedes.handle(socket)`, before any subscription captures the deliver functions. */
export function limitOutboundQueue(client: Client, options: OutboundQueueOptions): void {
  const now = options.now ?? (() => performance.now());
  let messages = 0;
  let bytes = 0;
  let dropped = 0;
  let overSince: number | undefined;
  let reported = false;

  const overBy = (factor: number, size: number) => {
    const limits = options.limitsOf(client);
    return messages + 1 > limits.outboundQueueMessages * factor || bytes + size > limits.outboundQueueBytes * factor;
  };
  const tooSlow = () => {
    if (reported) return;
    reported = true;
    options.onTooSlow(client, { queuedMessages: messages, queuedBytes: bytes, dropped, overLimitMs: Math.round(now() - (overSince ?? now())) });
  };
  const over = () => {
    const at = now();
    overSince ??= at;
    if (at - overSince >= options.overLimitGraceMs) tooSlow();
  };
  const queue = (deliver: Deliver, packet: AedesPublishPacket, size: number, callback: () => void) => {
    messages++;
    bytes += size;
    deliver(packet, () => {
      messages--;
      bytes -= size;
      if (overSince !== undefined && !overBy(1, 0)) overSince = undefined;
    });
    // The emitter goes on at once; asynchronously, so that it does not recurse into its own queue (one
    // Immediate per loop turn for all deliveries: broker/call-soon.ts).
    callSoon(callback);
  };

  wrapDelivery(client, ({ deliver0, deliverQoS }) => {
    const limitedDeliver0: Deliver = (packet, callback) => {
      const size = sizeOf(packet);
      if (overBy(1, size)) {
        dropped++;
        options.onDropped(0);
        over();
        callSoon(callback);
        return;
      }
      queue(deliver0, packet, size, callback);
    };
    const limitedDeliverQoS: Deliver = (packet, callback) => {
      // Retained messages sent on SUBSCRIBE come one at a time from a stream that waits for each write
      // (lib/handlers/subscribe.js): the socket already bounds them, and none may be lost to the limit.
      if (isRetainedReplay(packet)) return (packet.qos === 0 ? deliver0 : deliverQoS)(packet, callback);
      // aedes downgrades a QoS 0 message by calling deliver0 itself; count it once, there.
      if (packet.qos === 0) return limitedDeliver0(packet, callback);
      const size = sizeOf(packet);
      if (overBy(1, size)) over();
      if (overBy(2, size)) {
        dropped++;
        options.onDropped(packet.qos);
        tooSlow();
        callSoon(callback);
        return;
      }
      queue(deliverQoS, packet, size, callback);
    };
    return { deliver0: limitedDeliver0, deliverQoS: limitedDeliverQoS };
  });
}
