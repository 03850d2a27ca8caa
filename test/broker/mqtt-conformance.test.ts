import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accepted, exchange, publish, refused } from '../helpers/mqtt-conformance-cases.ts';
import { nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * MQTT 3.1.1 strictness, byte by byte, against a real gateway over mTLS: every packet the specification says
 * must close the Network Connection is written raw on a device's own TLS socket, followed by a PINGREQ. A
 * conforming gateway closes the connection without answering either (or, for an unsupported protocol level,
 * answers CONNACK 0x01 first [MQTT-3.1.2-2]); one that lets the packet through answers the PINGREQ.
 */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

let devices = 0;

/** A fresh device and its TLS connection; see `exchange` for the rest. */
async function deviceExchange(packet: (id: string) => Buffer, options: { first?: boolean; awaited?: string[] } = {}) {
  const id = `strict-${++devices}`;
  const credential = await gw.createDevice(id);
  const socket = tlsConnect({ host: '127.0.0.1', port: gw.mqttPort, ca: gw.ca, key: credential.key, cert: credential.cert, servername: 'localhost' });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  return exchange(socket, id, packet(id), options);
}

describe('MQTT 3.1.1 conformance at the byte level', () => {
  // First, on a fresh gateway: the audit trail is sampled per code and second.
  it('records a refusal in the audit trail with its code and statement', async () => {
    expect(await deviceExchange((id) => publish(`devices/${id}/t`, { qos: 1, id: 0 }))).toEqual({ frames: [], closed: true });
    const entry = await gw.waitForAudit({ action: 'mqtt.packet' }, (e) => e.code === 'MQTT_PROTOCOL_VIOLATION');
    expect(entry.detail).toMatchObject({ statement: 'MQTT-2.3.1-1', refused: 1 });
    expect(entry.actor).toMatch(/^device:strict-/);
  });

  it.each(refused.map((row) => [`[${row.statement}] ${row.what}`, row] as const))('closes the connection on %s', async (_name, row) => {
    expect(await deviceExchange(row.packet, { first: row.first ?? false })).toEqual({ frames: row.before ?? [], closed: true });
  });

  it.each(accepted.map((row) => [row.what, row] as const))('goes on after a valid %s', async (_name, row) => {
    const outcome = await deviceExchange(row.packet, { first: row.first ?? false, awaited: row.frames });
    expect({ frames: outcome.frames.sort(), closed: outcome.closed }).toEqual({ frames: row.frames.sort(), closed: false });
  });

  it('records an unsupported protocol level as MQTT_PROTOCOL_UNSUPPORTED', async () => {
    const entry = await gw.waitForAudit({ action: 'mqtt.connect' }, (e) => e.code === 'MQTT_PROTOCOL_UNSUPPORTED');
    expect(entry.detail).toMatchObject({ statement: 'MQTT-3.1.2-2' });
  });

  it('keeps serving everyone else: a device still publishes and receives with mqtt.js', async () => {
    const client = await gw.connect('strict-after', await gw.createDevice('strict-after'));
    await client.subscribeAsync('devices/strict-after/ping');
    const received = nextMessage(client, 'devices/strict-after/ping');
    await client.publishAsync('devices/strict-after/ping', 'pong', { qos: 1 });
    expect(await received).toBe('pong');
    await client.endAsync();
  });
});
