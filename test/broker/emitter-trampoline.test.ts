import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { preventEmitterRecursion, useConstantTimeEmitterQueue } from '../../broker/aedes-internals.ts';

const require = createRequire(import.meta.url);
type Emitter = {
  on(topic: string, listener: (message: { topic: string; n?: number }, done: () => void) => void): void;
  emit(message: { topic: string; n?: number }, callback?: (error?: Error) => void): void;
};
const mqemitter = require('mqemitter') as (options: { concurrency: number }) => Emitter;

/**
 * The crash after a flood: one slow message holds the emitter's only slot while 20,000 others queue up;
 * none of them has a subscriber, so each finishes synchronously and starts the next from inside itself.
 */
function flood(emitter: Emitter): Promise<{ finished: number; order: number[]; error?: unknown }> {
  return new Promise((resolve) => {
    const order: number[] = [];
    let finished = 0;
    emitter.on('slow', (_message, done) => setImmediate(done));
    emitter.on('seen/+', (message, done) => {
      order.push(message.n ?? -1);
      done();
    });
    emitter.emit({ topic: 'slow' });
    const total = 20_000;
    for (let n = 0; n < total; n++) {
      emitter.emit({ topic: n % 1000 === 0 ? 'seen/x' : 'nobody/listens', n }, () => {
        if (++finished === total) resolve({ finished, order });
      });
    }
    process.once('uncaughtException', (error) => resolve({ finished, order, error }));
  });
}

describe('preventEmitterRecursion', () => {
  it('reproduces the stack overflow on a bare mqemitter (so the next test cannot pass vacuously)', async () => {
    const emitter = mqemitter({ concurrency: 1 });
    const thrown = new Promise<unknown>((resolve) =>
      emitter.on('slow', (_message, done) =>
        setImmediate(() => {
          try {
            done();
            resolve(undefined);
          } catch (error) {
            resolve(error);
          }
        }),
      ),
    );
    emitter.emit({ topic: 'slow' });
    for (let n = 0; n < 20_000; n++) emitter.emit({ topic: 'nobody/listens', n });
    expect(await thrown).toBeInstanceOf(RangeError);
  });

  it('drains 20,000 queued messages without recursion, in order', async () => {
    const emitter = mqemitter({ concurrency: 1 });
    preventEmitterRecursion(emitter);
    const result = await flood(emitter);
    expect(result.error).toBeUndefined();
    expect(result.finished).toBe(20_000);
    expect(result.order).toEqual(Array.from({ length: 20 }, (_, i) => i * 1000));
  });
});

describe('useConstantTimeEmitterQueue', () => {
  it('keeps a bare mqemitter delivering every queued message once, in order, with its callback', async () => {
    const emitter = mqemitter({ concurrency: 1 }) as Emitter & { length: number };
    preventEmitterRecursion(emitter);
    useConstantTimeEmitterQueue(emitter);
    const seen: number[] = [];
    emitter.on('seen/+', (message, done) => {
      seen.push(message.n ?? -1);
      setImmediate(done); // asynchronous: every other message waits in the queue
    });
    const total = 5000;
    const called: number[] = [];
    await new Promise<void>((resolve) => {
      for (let n = 0; n < total; n++) {
        emitter.emit({ topic: 'seen/x', n }, () => {
          called.push(n);
          if (called.length === total) resolve();
        });
      }
      expect(emitter.length).toBe(total - 1);
    });
    expect(seen).toEqual([...Array(total).keys()]);
    expect(called).toEqual([...Array(total).keys()]);
    expect(emitter.length).toBe(0);
  });
});
