import { once } from 'node:events';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { encodeRemainingLength } from '../../bench/mqtt-wire.ts';
import type { ClientCredential } from '../helpers/test-gateway.ts';

/**
 * MQTT 3.1.1 packets written byte by byte, for the attacker's side of the suite: mqtt.js waits for CONNACK
 * before it sends anything else, and an attacker does not. Pipelining CONNECT with a PUBLISH or SUBSCRIBE in
 * one write checks that nothing is acted on before the session is admitted. Only what the suite needs is
 * encoded (MQTT 3.1.1 §3.1 CONNECT, §3.3 PUBLISH, §3.8 SUBSCRIBE, §3.12 PINGREQ) and decoded (the type,
 * CONNACK's return code, SUBACK's codes and PUBLISH's topic).
 */

const utf8 = (text: string) => {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
};

// §2.2.3 Remaining Length: the one encoder the benches and test fixtures share.
const packet = (firstByte: number, body: Buffer) => Buffer.concat([Buffer.from([firstByte]), encodeRemainingLength(body.length), body]);

export interface ConnectOptions {
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  readonly will?: { readonly topic: string; readonly payload: string; readonly qos?: 0 | 1; readonly retain?: boolean };
  readonly keepalive?: number;
  readonly clean?: boolean;
}

export function connectPacket(options: ConnectOptions): Buffer {
  let flags = options.clean === false ? 0 : 0x02;
  if (options.will) flags |= 0x04 | ((options.will.qos ?? 0) << 3) | (options.will.retain ? 0x20 : 0);
  if (options.password !== undefined) flags |= 0x40;
  if (options.username !== undefined) flags |= 0x80;
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(options.keepalive ?? 30);
  const parts = [utf8('MQTT'), Buffer.from([4, flags]), keepalive, utf8(options.clientId)];
  if (options.will) parts.push(utf8(options.will.topic), utf8(options.will.payload));
  if (options.username !== undefined) parts.push(utf8(options.username));
  if (options.password !== undefined) parts.push(utf8(options.password));
  return packet(0x10, Buffer.concat(parts));
}

export function publishPacket(topic: string, payload: string | Buffer, options: { qos?: 0 | 1; retain?: boolean; packetId?: number } = {}): Buffer {
  const qos = options.qos ?? 0;
  const id = Buffer.alloc(qos > 0 ? 2 : 0);
  if (qos > 0) id.writeUInt16BE(options.packetId ?? 1);
  return packet(0x30 | (qos << 1) | (options.retain ? 1 : 0), Buffer.concat([utf8(topic), id, Buffer.from(payload)]));
}

export function subscribePacket(packetId: number, filters: readonly string[]): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(packetId);
  // §3.8.1: the fixed header flags of SUBSCRIBE are 0010.
  return packet(0x82, Buffer.concat([id, ...filters.map((filter) => Buffer.concat([utf8(filter), Buffer.from([1])]))]));
}

export const pingreqPacket = Buffer.from([0xc0, 0x00]);

export type ServerPacket =
  | { readonly type: 'connack'; readonly returnCode: number }
  | { readonly type: 'suback'; readonly granted: number[] }
  | { readonly type: 'publish'; readonly topic: string; readonly payload: string }
  | { readonly type: 'pingresp' }
  | { readonly type: 'other'; readonly code: number };

/** Splits what the server sent into packets; returns the unparsed tail. */
export function parseServerPackets(buffer: Buffer): { packets: ServerPacket[]; rest: Buffer } {
  const packets: ServerPacket[] = [];
  let offset = 0;
  for (;;) {
    if (offset + 2 > buffer.length) break;
    let length = 0;
    let multiplier = 1;
    let cursor = offset + 1;
    let complete = false;
    while (cursor < buffer.length && cursor < offset + 5) {
      const byte = buffer[cursor++] as number;
      length += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      if ((byte & 0x80) === 0) {
        complete = true;
        break;
      }
    }
    if (!complete || cursor + length > buffer.length) break;
    const first = buffer[offset] as number;
    const body = buffer.subarray(cursor, cursor + length);
    const type = first >> 4;
    if (type === 2) packets.push({ type: 'connack', returnCode: body[1] ?? -1 });
    else if (type === 9) packets.push({ type: 'suback', granted: [...body.subarray(2)] });
    else if (type === 13) packets.push({ type: 'pingresp' });
    else if (type === 3) {
      const topicLength = body.readUInt16BE(0);
      const qos = (first >> 1) & 3;
      const topic = body.subarray(2, 2 + topicLength).toString('utf8');
      packets.push({ type: 'publish', topic, payload: body.subarray(2 + topicLength + (qos > 0 ? 2 : 0)).toString('utf8') });
    } else packets.push({ type: 'other', code: type });
    offset = cursor + length;
  }
  return { packets, rest: buffer.subarray(offset) };
}

export interface RawConnection {
  readonly socket: Socket | TLSSocket;
  readonly packets: ServerPacket[];
  readonly closed: Promise<void>;
  isClosed(): boolean;
  write(...chunks: Buffer[]): void;
  /** The first packet matching, or undefined once the connection closes or `ms` pass. */
  next(match: (packet: ServerPacket) => boolean, ms?: number): Promise<ServerPacket | undefined>;
  destroy(): void;
}

export interface RawTarget {
  readonly port: number;
  readonly ca: string;
  /** No TLS at all: a bare TCP socket (the "raw TCP" attacker). */
  readonly tcpOnly?: boolean;
  readonly localAddress?: string;
}

/** Opens a connection and resolves once the TLS handshake finished (or the TCP socket connected). */
export async function openRaw(target: RawTarget, credential?: ClientCredential): Promise<RawConnection> {
  const socket = target.tcpOnly
    ? tcpConnect({ host: '127.0.0.1', port: target.port, ...(target.localAddress ? { localAddress: target.localAddress } : {}) })
    : tlsConnect({
        host: '127.0.0.1',
        port: target.port,
        ca: target.ca,
        servername: 'localhost',
        ...(credential ? { key: credential.key, cert: credential.cert } : {}),
        ...(target.localAddress ? { localAddress: target.localAddress } : {}),
      });
  socket.on('error', () => {});
  let buffered: Buffer = Buffer.alloc(0);
  const packets: ServerPacket[] = [];
  const waiters = new Set<() => void>();
  let closedFlag = false;
  const closed = once(socket, 'close').then(() => {
    closedFlag = true;
    for (const wake of waiters) wake();
  });
  socket.on('data', (chunk: Buffer) => {
    const parsed = parseServerPackets(Buffer.concat([buffered, chunk]));
    buffered = parsed.rest;
    packets.push(...parsed.packets);
    for (const wake of waiters) wake();
  });
  await Promise.race([once(socket, target.tcpOnly ? 'connect' : 'secureConnect'), closed]);
  return {
    socket,
    packets,
    closed,
    isClosed: () => closedFlag,
    write: (...chunks) => {
      if (!closedFlag && !socket.destroyed) socket.write(Buffer.concat(chunks));
    },
    next(match, ms = 3000) {
      return new Promise((resolve) => {
        const check = () => {
          const found = packets.find(match);
          if (found !== undefined || closedFlag) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          resolve(packets.find(match));
        }, ms);
        waiters.add(check);
        check();
      });
    },
    destroy: () => socket.destroy(),
  };
}
