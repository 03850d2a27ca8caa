import type { Duplex } from 'node:stream';
import { createFrameReader, encodeRemainingLength, type MqttFrame } from '../../bench/mqtt-wire.ts';

/**
 * MQTT 3.1.1 packets that are wrong in exactly one way, one row per normative statement whose breach must
 * close the Network Connection, and valid look-alikes that must not. Shared by the byte-level test against a
 * real gateway over mTLS (test/broker/mqtt-conformance.test.ts) and the test that each row is refused for
 * its own statement (test/broker/mqtt-conformance-rules.test.ts).
 */

// --- encoding: just enough MQTT 3.1.1 to write packets that are wrong in exactly one way ----------------

export const u16 = (value: number) => Buffer.from([value >> 8, value & 0xff]);
/** A length-prefixed field [MQTT-1.5.3]; a Buffer is written as is, so it can hold ill-formed UTF-8. */
export const field = (value: string | Buffer) => {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([u16(bytes.length), bytes]);
};
export const frame = (firstByte: number, ...parts: Buffer[]) => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([firstByte]), encodeRemainingLength(body.length), body]);
};
export const utf8 = (...parts: (string | number[])[]) => Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'utf8') : Buffer.from(part))));

export interface ConnectFields {
  clientId: string | Buffer;
  name?: string;
  level?: number;
  /** Connect flags as sent; by default derived from the fields below, plus clean session. */
  flags?: number;
  will?: { topic: string | Buffer; payload?: Buffer; qos?: number; retain?: boolean };
  username?: string | Buffer;
  password?: Buffer;
  trailing?: Buffer;
}

export function connect(fields: ConnectFields): Buffer {
  const { will } = fields;
  const derived =
    0x02 |
    (will ? 0x04 | ((will.qos ?? 0) << 3) | (will.retain ? 0x20 : 0) : 0) |
    (fields.password !== undefined ? 0x40 : 0) |
    (fields.username !== undefined ? 0x80 : 0);
  return frame(
    0x10,
    field(fields.name ?? 'MQTT'),
    Buffer.from([fields.level ?? 4, fields.flags ?? derived]),
    u16(60),
    field(fields.clientId),
    ...(will ? [field(will.topic), field(will.payload ?? Buffer.from('gone'))] : []),
    ...(fields.username !== undefined ? [field(fields.username)] : []),
    ...(fields.password !== undefined ? [field(fields.password)] : []),
    fields.trailing ?? Buffer.alloc(0),
  );
}

export const publish = (topic: string | Buffer, options: { qos?: number; id?: number; dup?: boolean } = {}) => {
  const qos = options.qos ?? 0;
  return frame(0x30 | (options.dup ? 0x08 : 0) | (qos << 1), field(topic), ...(qos > 0 ? [u16(options.id ?? 1)] : []), Buffer.from('hello'));
};
export const subscribe = (id: number, ...filters: [string | Buffer, number][]) => frame(0x82, u16(id), ...filters.flatMap(([filter, options]) => [field(filter), Buffer.from([options])]));
export const unsubscribe = (id: number, ...filters: (string | Buffer)[]) => frame(0xa2, u16(id), ...filters.map(field));
export const pingreq = Buffer.from([0xc0, 0x00]);

// --- the exchange ------------------------------------------------------------------------------------------

const describeFrame = (f: MqttFrame) => {
  const name = ['reserved', 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth'][f.type] ?? '?';
  if (f.type === 2) return `connack:${f.body[1]}`;
  if (f.type === 9) return `suback:${[...f.body.subarray(2)].join(',')}`;
  return name;
};

export interface Outcome {
  /** What the server sent after the packet under test ("connack:1", "puback", "suback:1,2", …). */
  frames: string[];
  /** The server closed the connection (rather than answering the PINGREQ that followed). */
  closed: boolean;
}

/**
 * On a connected byte stream to the server: sends a valid CONNECT for `clientId` unless the packet under
 * test is the first one, then writes the packet and a PINGREQ in one write. Settles once every frame of
 * `awaited` arrived (the server went on; aedes answers the packets of one read concurrently, so in no fixed
 * order) or when the server closes the stream. Destroys the stream before it returns.
 */
export async function exchange(stream: Duplex, clientId: string, packet: Buffer, options: { first?: boolean; awaited?: string[] } = {}): Promise<Outcome> {
  const awaited = options.awaited ?? ['pingresp'];
  let frames: string[] = [];
  let onFrame: () => void = () => {};
  stream.on(
    'data',
    createFrameReader((f) => {
      frames.push(describeFrame(f));
      onFrame();
    }),
  );
  const closed = new Promise<true>((resolve) => stream.once('close', () => resolve(true)));
  try {
    if (!options.first) {
      const connacked = new Promise<void>((resolve) => (onFrame = () => frames.includes('connack:0') && resolve()));
      stream.write(connect({ clientId }));
      await Promise.race([connacked, closed]);
      if (frames.join() !== 'connack:0') throw new Error(`a valid CONNECT was answered with ${frames.join() || 'a close'}`);
      frames = [];
    }
    const answered = new Promise<false>((resolve) => (onFrame = () => awaited.every((name) => frames.includes(name)) && resolve(false)));
    stream.write(Buffer.concat([packet, pingreq]));
    return { frames, closed: await Promise.race([answered, closed]) };
  } finally {
    stream.destroy();
  }
}

// --- the table ---------------------------------------------------------------------------------------------

export interface RefusedRow {
  /** The normative statement of MQTT 3.1.1 the packet breaks. */
  statement: string;
  what: string;
  packet: (id: string) => Buffer;
  /** The packet under test is the first one on the connection (a CONNECT, or what stands in for it). */
  first?: boolean;
  /** Frames the gateway must send before it closes; none by default. */
  before?: string[];
  /** Refused by session admission (client id = device id), not by the conformance guard. */
  byAdmission?: true;
}

export const refused: RefusedRow[] = [
  // fixed header
  { statement: 'MQTT-2.2.2-2', what: 'SUBSCRIBE with flags 0000 (must be 0010)', packet: (id) => frame(0x80, u16(1), field(`devices/${id}/a`), Buffer.from([0])) },
  { statement: 'MQTT-2.2.2-2', what: 'UNSUBSCRIBE with flags 0000', packet: (id) => frame(0xa0, u16(1), field(`devices/${id}/a`)) },
  { statement: 'MQTT-2.2.2-2', what: 'PUBREL with flags 0000', packet: () => frame(0x60, u16(1)) },
  { statement: 'MQTT-2.2.2-2', what: 'PUBACK with flags 0001', packet: () => frame(0x41, u16(1)) },
  { statement: 'MQTT-2.2.2-2', what: 'PINGREQ with flags 0001', packet: () => Buffer.from([0xc1, 0x00]) },
  { statement: 'MQTT-2.2.2-2', what: 'DISCONNECT with flags 1000', packet: () => Buffer.from([0xe8, 0x00]) },
  { statement: 'MQTT-2.2.2-2', what: 'CONNECT with flags 0010', first: true, packet: (id) => Buffer.concat([Buffer.from([0x12]), connect({ clientId: id }).subarray(1)]) },
  { statement: 'MQTT-4.8.0-1', what: 'a Remaining Length of five bytes', packet: () => Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]) },
  { statement: 'MQTT-4.8.0-1', what: 'packet type 0 (reserved)', packet: () => Buffer.from([0x00, 0x00]) },
  { statement: 'MQTT-4.8.0-1', what: 'a CONNACK sent by a client', packet: () => Buffer.from([0x20, 0x02, 0x00, 0x00]) },
  { statement: 'MQTT-4.8.0-1', what: 'a SUBACK sent by a client', packet: () => frame(0x90, u16(1), Buffer.from([0])) },
  { statement: 'MQTT-4.8.0-1', what: 'a PINGRESP sent by a client', packet: () => Buffer.from([0xd0, 0x00]) },
  { statement: 'MQTT-4.8.0-1', what: 'PUBACK with a Remaining Length of 3', packet: () => frame(0x40, u16(1), Buffer.from([0])) },
  { statement: 'MQTT-4.8.0-1', what: 'PINGREQ with a Remaining Length of 1', packet: () => Buffer.from([0xc0, 0x01, 0x00]) },

  // packet identifiers
  { statement: 'MQTT-2.3.1-1', what: 'PUBLISH QoS 1 with packet id 0', packet: (id) => publish(`devices/${id}/t`, { qos: 1, id: 0 }) },
  { statement: 'MQTT-2.3.1-1', what: 'PUBLISH QoS 2 with packet id 0', packet: (id) => publish(`devices/${id}/t`, { qos: 2, id: 0 }) },
  { statement: 'MQTT-2.3.1-1', what: 'SUBSCRIBE with packet id 0', packet: (id) => subscribe(0, [`devices/${id}/a`, 0]) },
  { statement: 'MQTT-2.3.1-1', what: 'UNSUBSCRIBE with packet id 0', packet: (id) => unsubscribe(0, `devices/${id}/a`) },

  // PUBLISH
  { statement: 'MQTT-3.3.1-4', what: 'PUBLISH with QoS 3', packet: (id) => frame(0x36, field(`devices/${id}/t`), u16(1), Buffer.from('x')) },
  { statement: 'MQTT-3.3.1-2', what: 'PUBLISH QoS 0 with DUP set', packet: (id) => publish(`devices/${id}/t`, { dup: true }) },
  { statement: 'MQTT-3.3.2-2', what: 'PUBLISH to a topic name with "+"', packet: (id) => publish(`devices/${id}/+`) },
  { statement: 'MQTT-3.3.2-2', what: 'PUBLISH to a topic name with "#"', packet: (id) => publish(`devices/${id}/#`) },
  { statement: 'MQTT-4.7.3-1', what: 'PUBLISH to an empty topic name', packet: () => publish('') },

  // SUBSCRIBE / UNSUBSCRIBE
  { statement: 'MQTT-3.8.3-4', what: 'SUBSCRIBE requesting QoS 3', packet: (id) => subscribe(1, [`devices/${id}/a`, 3]) },
  { statement: 'MQTT-3.8.3-4', what: 'SUBSCRIBE with a reserved bit set in its options byte', packet: (id) => subscribe(1, [`devices/${id}/a`, 0x04]) },
  { statement: 'MQTT-3.8.3-3', what: 'SUBSCRIBE with no topic filter', packet: () => subscribe(1) },
  { statement: 'MQTT-3.10.3-2', what: 'UNSUBSCRIBE with no topic filter', packet: () => unsubscribe(1) },
  { statement: 'MQTT-4.7.1-2', what: 'SUBSCRIBE to a filter with "#" not last', packet: (id) => subscribe(1, [`devices/${id}/#/a`, 0]) },
  { statement: 'MQTT-4.7.1-2', what: 'SUBSCRIBE to a filter with "#" inside a level', packet: (id) => subscribe(1, [`devices/${id}/a#`, 0]) },
  { statement: 'MQTT-4.7.1-3', what: 'SUBSCRIBE to a filter with "+" inside a level', packet: (id) => subscribe(1, [`devices/${id}/a+`, 0]) },
  { statement: 'MQTT-4.7.3-1', what: 'SUBSCRIBE to an empty filter', packet: () => subscribe(1, ['', 0]) },
  { statement: 'MQTT-4.7.1-3', what: 'UNSUBSCRIBE from a filter with "+" inside a level', packet: (id) => unsubscribe(1, `devices/${id}/a+`) },

  // UTF-8 strings
  { statement: 'MQTT-1.5.3-1', what: 'a PUBLISH topic with byte 0xFF', packet: (id) => publish(utf8(`devices/${id}/`, [0xff])) },
  { statement: 'MQTT-1.5.3-1', what: 'a PUBLISH topic with an encoded surrogate (U+D800)', packet: (id) => publish(utf8(`devices/${id}/`, [0xed, 0xa0, 0x80])) },
  { statement: 'MQTT-1.5.3-1', what: 'a PUBLISH topic with an overlong "/" (C0 AF)', packet: (id) => publish(utf8(`devices/${id}/`, [0xc0, 0xaf], 'x')) },
  { statement: 'MQTT-1.5.3-1', what: 'a PUBLISH topic with a truncated 4-byte sequence', packet: (id) => publish(utf8(`devices/${id}/`, [0xf1, 0x80, 0x80], 'x')) },
  { statement: 'MQTT-1.5.3-2', what: 'a PUBLISH topic with U+0000', packet: (id) => publish(utf8(`devices/${id}/`, [0x00], 'x')) },
  { statement: 'MQTT-1.5.3-1', what: 'a SUBSCRIBE filter with byte 0xFE', packet: (id) => subscribe(1, [utf8(`devices/${id}/`, [0xfe]), 0]) },
  { statement: 'MQTT-1.5.3-2', what: 'a SUBSCRIBE filter with U+0000', packet: (id) => subscribe(1, [utf8(`devices/${id}/`, [0x00]), 0]) },
  { statement: 'MQTT-1.5.3-1', what: 'an UNSUBSCRIBE filter with byte 0xFF', packet: (id) => unsubscribe(1, utf8(`devices/${id}/`, [0xff])) },
  { statement: 'MQTT-1.5.3-1', what: 'a client id with byte 0xFF', first: true, packet: (id) => connect({ clientId: utf8(id, [0xff]) }) },
  { statement: 'MQTT-1.5.3-2', what: 'a client id with U+0000', first: true, packet: (id) => connect({ clientId: utf8(id, [0x00]) }) },
  { statement: 'MQTT-1.5.3-1', what: 'a will topic with byte 0xFF', first: true, packet: (id) => connect({ clientId: id, will: { topic: utf8(`devices/${id}/`, [0xff]) } }) },
  { statement: 'MQTT-1.5.3-1', what: 'a user name with an encoded surrogate', first: true, packet: (id) => connect({ clientId: id, username: utf8('user', [0xed, 0xb0, 0x80]) }) },
  { statement: 'MQTT-1.5.3-2', what: 'a user name with U+0000', first: true, packet: (id) => connect({ clientId: id, username: utf8('user', [0x00]) }) },

  // CONNECT
  { statement: 'MQTT-3.1.0-1', what: 'a PUBLISH before CONNECT', first: true, packet: (id) => publish(`devices/${id}/t`) },
  { statement: 'MQTT-3.1.0-1', what: 'a PINGREQ before CONNECT', first: true, packet: () => pingreq },
  { statement: 'MQTT-3.1.0-2', what: 'a second CONNECT', packet: (id) => connect({ clientId: id }) },
  { statement: 'MQTT-3.1.2-1', what: 'protocol name "MQTX"', first: true, packet: (id) => connect({ clientId: id, name: 'MQTX' }) },
  { statement: 'MQTT-3.1.2-3', what: 'the reserved connect flag set', first: true, packet: (id) => connect({ clientId: id, flags: 0x03 }) },
  { statement: 'MQTT-3.1.2-13', what: 'will flag 0 with will QoS 1', first: true, packet: (id) => connect({ clientId: id, flags: 0x0a }) },
  { statement: 'MQTT-3.1.2-15', what: 'will flag 0 with will retain', first: true, packet: (id) => connect({ clientId: id, flags: 0x22 }) },
  { statement: 'MQTT-3.1.2-14', what: 'will QoS 3', first: true, packet: (id) => connect({ clientId: id, will: { topic: `devices/${id}/status`, qos: 3 } }) },
  { statement: 'MQTT-3.3.2-2', what: 'a will topic with "#"', first: true, packet: (id) => connect({ clientId: id, will: { topic: `devices/${id}/#` } }) },
  { statement: 'MQTT-3.1.2-22', what: 'a password without a user name', first: true, packet: (id) => connect({ clientId: id, password: Buffer.from('secret') }) },
  { statement: 'MQTT-4.8.0-1', what: 'a CONNECT with bytes after its last field', first: true, packet: (id) => connect({ clientId: id, trailing: Buffer.from([0x00]) }) },
  { statement: 'MQTT-3.1.3-8', what: 'an empty client id with clean session 0', first: true, before: ['connack:2'], byAdmission: true, packet: () => connect({ clientId: '', flags: 0x00 }) },
  { statement: 'MQTT-3.1.2-2', what: 'protocol level 5', first: true, before: ['connack:1'], packet: (id) => frame(0x10, field('MQTT'), Buffer.from([5, 0x02]), u16(60), Buffer.from([0]), field(id)) },
  { statement: 'MQTT-3.1.2-2', what: 'protocol level 6', first: true, before: ['connack:1'], packet: (id) => connect({ clientId: id, level: 6 }) },
  { statement: 'MQTT-3.1.2-2', what: 'protocol level 2', first: true, before: ['connack:1'], packet: (id) => connect({ clientId: id, level: 2 }) },
  { statement: 'MQTT-3.1.2-2', what: 'protocol level 0x84 (a bridge extension)', first: true, before: ['connack:1'], packet: (id) => connect({ clientId: id, level: 0x84 }) },
  { statement: 'MQTT-3.1.2-2', what: 'protocol name "MQTT" with level 3', first: true, before: ['connack:1'], packet: (id) => connect({ clientId: id, level: 3 }) },
  { statement: 'MQTT-3.1.2-2', what: 'protocol name "MQIsdp" with level 4', first: true, before: ['connack:1'], packet: (id) => connect({ clientId: id, name: 'MQIsdp' }) },
];

export interface AcceptedRow {
  what: string;
  packet: (id: string) => Buffer;
  first?: boolean;
  /** Everything the server answers, the PINGRESP included, in any order. */
  frames: string[];
}

/** Valid packets that look like the refused ones: the server must go on answering. */
export const accepted: AcceptedRow[] = [
  { what: 'CONNECT, MQTT level 4', first: true, packet: (id) => connect({ clientId: id }), frames: ['connack:0', 'pingresp'] },
  { what: 'CONNECT, MQIsdp level 3 (MQTT 3.1)', first: true, packet: (id) => connect({ clientId: id, name: 'MQIsdp', level: 3 }), frames: ['connack:0', 'pingresp'] },
  { what: 'CONNECT with user name, password and a QoS 1 retained will', first: true, packet: (id) => connect({ clientId: id, username: 'ünïcode', password: Buffer.from([0xff, 0x00]), will: { topic: `devices/${id}/status`, qos: 1, retain: true } }), frames: ['connack:0', 'pingresp'] },
  { what: 'PUBLISH QoS 1 with packet id 1', packet: (id) => publish(`devices/${id}/t`, { qos: 1, id: 1 }), frames: ['puback', 'pingresp'] },
  { what: 'PUBLISH QoS 1 with DUP set and packet id 65535', packet: (id) => publish(`devices/${id}/t`, { qos: 1, id: 65535, dup: true }), frames: ['puback', 'pingresp'] },
  { what: 'PUBLISH QoS 2, then PUBREL', packet: (id) => Buffer.concat([publish(`devices/${id}/t`, { qos: 2, id: 7 }), frame(0x62, u16(7))]), frames: ['pubrec', 'pubcomp', 'pingresp'] },
  { what: 'PUBLISH to a topic with multi-byte UTF-8 and a well-formed U+FFFD', packet: (id) => publish(`devices/${id}/température/\ufffd/😀`, { qos: 1, id: 2 }), frames: ['puback', 'pingresp'] },
  { what: 'SUBSCRIBE to two valid filters with wildcards', packet: (id) => subscribe(3, [`devices/${id}/+/a`, 1], [`devices/${id}/#`, 2]), frames: ['suback:1,2', 'pingresp'] },
  { what: 'UNSUBSCRIBE', packet: (id) => unsubscribe(4, `devices/${id}/+/a`), frames: ['unsuback', 'pingresp'] },
  { what: 'PUBACK for a message never sent', packet: () => frame(0x40, u16(9)), frames: ['pingresp'] },
];

