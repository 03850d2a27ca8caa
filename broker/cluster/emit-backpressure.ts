import { interceptEmits } from '../aedes-internals.ts';

/**
 * Back-pressure for mqemitter-redis. Its `emit(packet, done)` calls back as soon as Redis answered the
 * PUBLISH, long before any node (this one included) has read the message from its subscriber connection.
 * Aedes acknowledges and reads the next packet on that callback, so ingress runs unbounded while the
 * fan-out piles up in Redis' output buffer for our subscriber connection; at 32 MiB (Redis'
 * `client-output-buffer-limit pubsub`) Redis drops that connection and every message in it (measured: the
 * one-node benchmark delivered ~2k QoS 0 msg/s, the rest lost).
 *
 * Here `done` waits until this node has read back an echo marker published after the message: Redis
 * appends pub/sub messages to a subscriber's buffer in PUBLISH order and our PUBLISHes share one
 * connection, so the echo arrives only once everything published before it has been read and handed to
 * the local emitter. One marker per event-loop turn covers every emit of that turn. A marker lost to a
 * reconnect would hold publishers forever, so a batch is released anyway after `echoTimeoutMs`.
 */
interface RedisEmitter {
  on(topic: string, listener: (packet: { payload: Buffer }, callback: () => void) => void, done?: () => void): unknown;
}

type Done = (error?: Error) => void;

export function awaitLocalEcho(emitter: unknown, brokerId: string, echoTimeoutMs = 5000): { close(): void } {
  const mq = emitter as RedisEmitter;
  const topic = `$SYS/${brokerId}/fleetgate/echo`;
  const waiting = new Map<number, { dones: Done[]; timer: NodeJS.Timeout }>();
  let current: Done[] | undefined;
  let sequence = 0;
  let closed = false;

  const release = (id: number) => {
    const batch = waiting.get(id);
    if (batch === undefined) return;
    waiting.delete(id);
    clearTimeout(batch.timer);
    for (const done of batch.dones) done();
  };

  mq.on(topic, (packet, callback) => {
    release(Number(packet.payload.toString()));
    callback();
  });

  interceptEmits(mq, (emit) => (packet, done) => {
    if (closed || done === undefined) return emit(packet, done);
    const entry: Done = once(done);
    emit(packet, (error) => {
      if (error) entry(error);
    });
    if (current === undefined) {
      current = [];
      const id = ++sequence;
      const batch = current;
      setImmediate(() => {
        current = undefined;
        const timer = setTimeout(() => release(id), echoTimeoutMs);
        timer.unref();
        waiting.set(id, { dones: batch, timer });
        emit({ topic, payload: Buffer.from(String(id)) }, (error) => {
          if (error) release(id);
        });
      });
    }
    current.push(entry);
    return mq;
  });

  return {
    close() {
      closed = true;
      for (const id of [...waiting.keys()]) release(id);
    },
  };
}

function once(done: Done): Done {
  let called = false;
  return (error) => {
    if (called) return;
    called = true;
    done(error);
  };
}
