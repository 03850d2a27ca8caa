import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awaitLocalEcho } from '../../broker/cluster/emit-backpressure.ts';

const require = createRequire(import.meta.url);
interface Emitter {
  emit(packet: { topic: string; payload: Buffer }, done?: (error?: Error) => void): unknown;
  on(topic: string, listener: (packet: { payload: Buffer }, callback: () => void) => void, done?: () => void): unknown;
  close(done: () => void): unknown;
}
const createRedisEmitter = require('mqemitter-redis') as (options: { subConn: Redis; pubConn: Redis }) => Emitter;

describe('awaitLocalEcho (mqemitter-redis back-pressure)', () => {
  const run = `echo-test-${process.pid}`;
  let mq: Emitter;
  let echo: { close(): void };

  beforeAll(async () => {
    mq = createRedisEmitter({ subConn: new Redis('redis://127.0.0.1:6379/13'), pubConn: new Redis('redis://127.0.0.1:6379/13') });
    echo = awaitLocalEcho(mq, run);
    await new Promise<void>((resolve) => mq.on(`${run}/ready`, (_packet, callback) => callback(), resolve));
  });

  afterAll(async () => {
    echo.close();
    await new Promise<void>((resolve) => mq.close(resolve));
  });

  it('calls back a publish only once this node has received it from Redis', async () => {
    const received = new Set<string>();
    await new Promise<void>((resolve) => mq.on(`${run}/data/+`, (packet, callback) => void (received.add(packet.payload.toString()), callback()), resolve));
    const notYetReceived: string[] = [];
    await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        new Promise<void>((resolve, reject) =>
          mq.emit({ topic: `${run}/data/${i % 7}`, payload: Buffer.from(String(i)) }, (error) => {
            if (error) return reject(error);
            if (!received.has(String(i))) notYetReceived.push(String(i));
            resolve();
          }),
        ),
      ),
    );
    expect(notYetReceived).toEqual([]);
    expect(received.size).toBe(500);
  });

  it('releases publishers when the echo never comes back (lost subscriber connection)', async () => {
    const deaf: Emitter = { emit: (_packet, done) => void setImmediate(() => done?.()), on: () => undefined, close: (done) => done() };
    awaitLocalEcho(deaf, 'deaf', 10);
    await new Promise<void>((resolve, reject) => deaf.emit({ topic: 'a', payload: Buffer.alloc(1) }, (error) => (error ? reject(error) : resolve())));
  });
});
