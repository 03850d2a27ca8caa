import { Aedes, type Client } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { type Duplex, duplexPair } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitOutboundQueue } from '../../broker/outbound-queue-limit.ts';
import { until } from '../helpers/until.ts';

/**
 * The outbound queue's byte budget for QoS 0 (broker/outbound-queue-limit.ts), on a real aedes with real
 * MQTT frames over in-memory stream pairs (node:stream duplexPair passes back-pressure through: a peer that
 * does not read makes the broker side's write buffer grow, as a TCP socket would).
 */
const budgetBytes = 16 * 1024;
const payloadBytes = 1000;
const messages = 400; // ~400 KB: many times the budget plus what the in-memory pair buffers

interface Subscriber {
  readonly client: Client;
  readonly device: Duplex;
  received: number;
  dropped: number;
}

let aedes: Aedes;
beforeAll(async () => {
  aedes = await Aedes.createBroker();
});
afterAll(async () => {
  await new Promise<void>((resolve) => aedes.close(() => resolve()));
});

async function subscriber(clientId: string): Promise<Subscriber> {
  const [server, device] = duplexPair();
  const client = aedes.handle(server);
  const subscriber: Subscriber = { client, device, received: 0, dropped: 0 };
  limitOutboundQueue(client, {
    limitsOf: () => ({ outboundQueueMessages: 1_000_000, outboundQueueBytes: budgetBytes }),
    overLimitGraceMs: 60_000,
    onDropped: () => subscriber.dropped++,
    onTooSlow: () => {
      throw new Error('not expected within the grace period');
    },
  });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let subscribed = false;
  parser.on('packet', (packet) => {
    if (packet.cmd === 'suback') subscribed = true;
    if (packet.cmd === 'publish') subscriber.received++;
  });
  device.on('data', (chunk: Buffer) => parser.parse(chunk));
  device.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 0 }));
  device.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/#', qos: 0 }] }));
  await until(() => subscribed, `${clientId} subscribed`);
  return subscriber;
}

async function publishAll(): Promise<void> {
  const payload = Buffer.alloc(payloadBytes, 0x61);
  for (let i = 0; i < messages; i++) {
    await new Promise<void>((resolve, reject) =>
      aedes.publish({ cmd: 'publish', topic: 'devices/d1/telemetry', payload, qos: 0, retain: false, dup: false }, (error) => (error ? reject(error) : resolve())),
    );
  }
}

describe('QoS 0 towards a subscriber over its byte budget', () => {
  it('is dropped and counted for a subscriber that stops reading, while one that reads gets everything', async () => {
    const fast = await subscriber('fast');
    const slow = await subscriber('slow');
    slow.device.pause();

    await publishAll();
    await until(() => fast.received === messages, 'the reading subscriber got every message');
    expect(fast.dropped).toBe(0);
    expect(slow.dropped).toBeGreaterThan(0);

    // Once it reads again, it gets what was queued within its budget: every message is either delivered or counted as dropped.
    slow.device.resume();
    await until(() => slow.received + slow.dropped === messages, 'every message delivered or counted');
    expect(slow.received).toBeGreaterThan(0);
    expect(slow.received).toBeLessThan(messages);

    for (const { device } of [fast, slow]) {
      device.end();
      device.destroy();
    }
  });

  it('counts what already waits in the socket write buffer, not only the messages it queued itself', async () => {
    const slow = await subscriber('backlogged');
    slow.device.pause();
    // Bytes the broker wrote on this connection outside the queue (aedes writes acknowledgements and retained
    // replays straight to the socket): here PINGRESPs, until the write buffer holds more than the budget once
    // the in-memory pair has taken what its reading side buffers.
    const conn = (slow.client as unknown as { conn: Duplex }).conn;
    const pingresps = Buffer.from(Array.from({ length: 512 }, () => [0xd0, 0x00]).flat());
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      if (conn.writableLength > budgetBytes) break;
      conn.write(pingresps);
    }
    const before = slow.dropped;
    await publishAll();
    expect(slow.dropped - before).toBe(messages);
    slow.device.destroy();
    conn.destroy();
  });
});
