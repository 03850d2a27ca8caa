import { describe, expect, it } from 'vitest';
import { createFrameReader, decodePublish, encodeConnect, encodePuback, encodePublish, encodeRemainingLength, encodeSubscribe, type MqttFrame } from '../../bench/mqtt-wire.ts';

// The load generator's hand-made MQTT 3.1.1 frames (bench/mqtt-wire.ts), checked byte for byte against the spec.

describe('Remaining Length [MQTT-2.2.3]', () => {
  it.each([
    [0, [0x00]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [16_383, [0xff, 0x7f]],
    [16_384, [0x80, 0x80, 0x01]],
    [268_435_455, [0xff, 0xff, 0xff, 0x7f]],
  ])('%d → %j', (length, bytes) => {
    expect([...encodeRemainingLength(length)]).toEqual(bytes);
  });
});

describe('packets', () => {
  it('CONNECT: protocol MQTT level 4, clean session, keepalive, client id', () => {
    expect([...encodeConnect('dev-1', 600)]).toEqual([0x10, 17, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0x02, 0x58, 0, 5, ...Buffer.from('dev-1')]);
  });
  it('PUBLISH QoS 0 has no packet id; QoS 1 has one', () => {
    expect([...encodePublish('a/b', Buffer.from('hi'))]).toEqual([0x30, 7, 0, 3, 0x61, 0x2f, 0x62, 0x68, 0x69]);
    expect([...encodePublish('a/b', Buffer.from('hi'), 258)]).toEqual([0x32, 9, 0, 3, 0x61, 0x2f, 0x62, 1, 2, 0x68, 0x69]);
  });
  it('PUBACK and SUBSCRIBE', () => {
    expect([...encodePuback(258)]).toEqual([0x40, 2, 1, 2]);
    expect([...encodeSubscribe(1, 'devices/#', 1)]).toEqual([0x82, 14, 0, 1, 0, 9, ...Buffer.from('devices/#'), 1]);
  });
});

describe('frame reader', () => {
  const frames = () => {
    const seen: MqttFrame[] = [];
    return { seen, read: createFrameReader((frame) => seen.push({ ...frame, body: Buffer.from(frame.body) })) };
  };

  it('splits a stream that arrives one byte at a time, and frames that share a chunk', () => {
    const big = encodePublish('devices/d/telemetry', Buffer.alloc(300, 1), 7); // two-byte Remaining Length
    const stream = Buffer.concat([Buffer.from([0x20, 0x02, 0x00, 0x00]), big, encodePublish('x', Buffer.from('y'))]);
    const oneByOne = frames();
    for (const byte of stream) oneByOne.read(Buffer.from([byte]));
    const atOnce = frames();
    atOnce.read(stream);
    for (const { seen } of [oneByOne, atOnce]) {
      expect(seen.map((f) => f.type)).toEqual([2, 3, 3]);
      expect(decodePublish(seen[1] as MqttFrame)).toEqual({ topic: 'devices/d/telemetry', packetId: 7, payload: Buffer.alloc(300, 1) });
      expect(decodePublish(seen[2] as MqttFrame)).toEqual({ topic: 'x', payload: Buffer.from('y') });
    }
  });

  it('keeps an incomplete frame until the rest arrives', () => {
    const { seen, read } = frames();
    const publish = encodePublish('t', Buffer.from('payload'));
    read(publish.subarray(0, 5));
    expect(seen).toEqual([]);
    read(publish.subarray(5));
    expect(seen).toHaveLength(1);
  });
});
