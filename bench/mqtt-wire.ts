/**
 * The handful of MQTT 3.1.1 packets the load generator needs, encoded and framed by hand. mqtt.js costs the
 * loader several times more CPU per message than the brokers spend, and the suite's rule is that the load
 * generator must not be the bottleneck; raw frames on a TLS socket keep the client side as cheap as it gets,
 * and the same bytes go to both brokers. Pure functions on Buffers: unit-tested in test/bench/.
 */

/** Remaining Length: 1–4 bytes, 7 bits each, low group first [MQTT-2.2.3]. */
export function encodeRemainingLength(length: number): Buffer {
  const bytes: number[] = [];
  let value = length;
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    bytes.push(byte);
  } while (value > 0);
  return Buffer.from(bytes);
}

function utf8Field(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(2);
  length.writeUInt16BE(body.length);
  return Buffer.concat([length, body]);
}

function packet(firstByte: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), encodeRemainingLength(body.length), body]);
}

/** CONNECT, clean session, no credentials (the certificate is the identity) [MQTT-3.1]. */
export function encodeConnect(clientId: string, keepaliveSeconds: number): Buffer {
  const header = Buffer.concat([utf8Field('MQTT'), Buffer.from([4, 0x02, keepaliveSeconds >> 8, keepaliveSeconds & 0xff])]);
  return packet(0x10, Buffer.concat([header, utf8Field(clientId)]));
}

/** PUBLISH QoS 0 (packetId undefined) or QoS 1. */
export function encodePublish(topic: string, payload: Buffer, packetId?: number): Buffer {
  const id = packetId === undefined ? Buffer.alloc(0) : Buffer.from([packetId >> 8, packetId & 0xff]);
  return packet(packetId === undefined ? 0x30 : 0x32, Buffer.concat([utf8Field(topic), id, payload]));
}

export function encodePuback(packetId: number): Buffer {
  return Buffer.from([0x40, 0x02, packetId >> 8, packetId & 0xff]);
}

export function encodeSubscribe(packetId: number, filter: string, qos: 0 | 1): Buffer {
  return packet(0x82, Buffer.concat([Buffer.from([packetId >> 8, packetId & 0xff]), utf8Field(filter), Buffer.from([qos])]));
}

export const pingreq = Buffer.from([0xc0, 0x00]);
export const disconnect = Buffer.from([0xe0, 0x00]);

export interface MqttFrame {
  /** The packet type, high nibble of the first byte (2 CONNACK, 3 PUBLISH, 4 PUBACK, 9 SUBACK, …). */
  readonly type: number;
  readonly flags: number;
  readonly body: Buffer;
}

/** Splits a byte stream into frames; keeps a partial frame until the rest arrives. */
export function createFrameReader(onFrame: (frame: MqttFrame) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let offset = 0;
    for (;;) {
      if (pending.length - offset < 2) break;
      let length = 0;
      let multiplier = 1;
      let index = offset + 1;
      let complete = false;
      while (index < pending.length && index < offset + 5) {
        const byte = pending[index++] ?? 0;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || pending.length < index + length) break;
      const first = pending[offset] ?? 0;
      onFrame({ type: first >> 4, flags: first & 0x0f, body: pending.subarray(index, index + length) });
      offset = index + length;
    }
    pending = offset === pending.length ? Buffer.alloc(0) : pending.subarray(offset);
  };
}

/** Topic, packet id (QoS > 0) and payload of a PUBLISH body. */
export function decodePublish(frame: MqttFrame): { topic: string; packetId?: number; payload: Buffer } {
  const topicLength = frame.body.readUInt16BE(0);
  const topic = frame.body.toString('utf8', 2, 2 + topicLength);
  const qos = (frame.flags >> 1) & 0x03;
  if (qos === 0) return { topic, payload: frame.body.subarray(2 + topicLength) };
  return { topic, packetId: frame.body.readUInt16BE(2 + topicLength), payload: frame.body.subarray(4 + topicLength) };
}
