import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeConnect, encodePublish } from '../../bench/mqtt-wire.ts';
import type { AuditEntry } from '../../registry/index.ts';
import { counterValue } from '../helpers/flood-fixture.ts';
import { type ClientCredential, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * Protocol refusals that aedes reports through its `clientError`/`connectionError` events, and TLS
 * handshakes that fail, are audited like the other refusals before a session exists: sampled per code and
 * second with the number of refusals each entry stands for (README "Flow control and admission limits"), so
 * that a flood can neither fill the registry nor go unrecorded.
 */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

async function tlsSession(credential: ClientCredential | undefined): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port: gw.mqttPort, ca: gw.ca, servername: 'localhost', ...(credential ?? {}) });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  return socket;
}

/** A device session opened with raw bytes: CONNECT, then CONNACK 0. */
async function connectedDevice(id: string): Promise<TLSSocket> {
  const socket = await tlsSession(await gw.createDevice(id));
  socket.write(encodeConnect(id, 60));
  const [connack] = (await once(socket, 'data')) as [Buffer];
  expect([...connack.subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, 0x00]);
  return socket;
}

function closedBy(socket: TLSSocket) {
  return socket.destroyed ? Promise.resolve() : once(socket, 'close').then(() => undefined);
}

const violation = (reason: RegExp) => (entry: AuditEntry) => entry.code === 'MQTT_PROTOCOL_VIOLATION' && reason.test(String((entry.detail as { reason?: unknown }).reason));

describe('protocol refusals through aedes clientError', () => {
  it('audits a second CONNECT on an open session [MQTT-3.1.0-2]', async () => {
    const socket = await connectedDevice('twice-1');
    socket.write(encodeConnect('twice-1', 60));
    await closedBy(socket);
    const entry = await gw.waitForAudit({ action: 'mqtt.packet', result: 'refused' }, violation(/second CONNECT/));
    expect(entry.actor).toBe('device:twice-1');
    expect(entry.detail).toMatchObject({ remote: '127.0.0.1', refused: 1 });
  });

  it('audits a PUBLISH sent before CONNECT [MQTT-3.1.0-1]', async () => {
    const socket = await tlsSession(undefined);
    socket.write(encodePublish('devices/x/y', Buffer.from('early')));
    await closedBy(socket);
    const entry = await gw.waitForAudit({ action: 'mqtt.packet', result: 'refused' }, violation(/before CONNECT/));
    expect(entry.actor).toBe('anonymous@127.0.0.1');
  });

  it('audits reserved packet types 0 and 15 [MQTT-2.2.1]', async () => {
    for (const [id, firstByte] of [['reserved-0', 0x00], ['reserved-15', 0xf0]] as const) {
      const socket = await connectedDevice(id);
      socket.write(Buffer.from([firstByte, 0x00]));
      await closedBy(socket);
      await gw.waitForAudit({ action: 'mqtt.packet', result: 'refused' }, (entry) => entry.code === 'MQTT_PROTOCOL_VIOLATION' && entry.actor === `device:${id}`);
    }
  });

  it('audits a TLS handshake that fails (plain HTTP on the MQTTS port)', async () => {
    const socket = netConnect({ host: '127.0.0.1', port: gw.mqttPort });
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await once(socket, 'close');
    const entry = await gw.waitForAudit({ action: 'mqtt.connection', result: 'refused' }, (e) => e.code === 'TLS_HANDSHAKE_FAILED');
    expect(entry.detail).toMatchObject({ remote: '127.0.0.1' });
    expect(String((entry.detail as { reason?: unknown }).reason)).toMatch(/http request|wrong version/i);
  });
});

describe('floods from peers without a session', () => {
  let flooded: TestGateway;
  beforeAll(async () => {
    flooded = await startTestGateway();
  });
  afterAll(async () => {
    await flooded?.close();
  });

  /** `count` TLS connections without a client certificate, each sending `bytes` and waiting to be closed. */
  async function flood(count: number, bytes: Buffer): Promise<number> {
    const started = Date.now();
    await Promise.all(
      Array.from({ length: count }, async () => {
        const socket = tlsConnect({ host: '127.0.0.1', port: flooded.mqttPort, ca: flooded.ca, servername: 'localhost' });
        socket.on('error', () => {});
        // Read what comes back (a CONNACK, say): a paused socket never sees the server's FIN.
        socket.resume();
        await once(socket, 'secureConnect');
        socket.write(bytes);
        await closedBy(socket);
      }),
    );
    return Math.ceil((Date.now() - started) / 1000);
  }

  /** Waits until the entries of `code` stand for `count` refusals; returns how many entries that took. */
  async function sampledEntries(code: string, count: number): Promise<number> {
    const entries = async () => (await flooded.gateway.dataDir.registry.queryAudit({ result: 'refused', limit: 1000 })).filter((e) => e.code === code);
    const counted = async () => (await entries()).reduce((sum, entry) => sum + Number((entry.detail as { refused?: unknown }).refused), 0);
    await until(async () => (await counted()) === count, `audit entries standing for all ${count} ${code} refusals`, 10_000);
    return (await entries()).length;
  }

  it('writes at most one audit entry per second for protocol violations, and the entries count every refusal', async () => {
    const floods = 40;
    const seconds = await flood(floods, encodePublish('devices/x/y', Buffer.from('early')));
    const entries = await sampledEntries('MQTT_PROTOCOL_VIOLATION', floods);
    // The first refusal is written at once, then one summary per second of flood, then the remainder.
    expect(entries).toBeLessThanOrEqual(seconds + 2);
    expect(entries).toBeLessThan(floods);
    const metrics = await flooded.api<string>('GET', '/metrics', { token: true });
    expect(counterValue(metrics.body, 'fleetgate_mqtt_connection_refusals_total', 'code="MQTT_PROTOCOL_VIOLATION"')).toBe(floods);
  });

  it('samples CONNECTs refused before any identity is known (no client certificate) the same way', async () => {
    const floods = 30;
    const seconds = await flood(floods, encodeConnect('nobody', 30));
    const entries = await sampledEntries('AUTH_NO_CLIENT_CERT', floods);
    expect(entries).toBeLessThanOrEqual(seconds + 2);
    expect(entries).toBeLessThan(floods);
    const sample = (await flooded.gateway.dataDir.registry.queryAudit({ action: 'mqtt.connect', result: 'refused', limit: 1 }))[0];
    expect(sample).toMatchObject({ actor: expect.stringMatching(/^anonymous@/), code: 'AUTH_NO_CLIENT_CERT' });
  });

  it('samples oversized packets the same way', async () => {
    const floods = 30;
    // A PUBLISH header announcing 1 MiB: refused when the header arrives (MQTT_PACKET_TOO_LARGE).
    const seconds = await flood(floods, Buffer.from([0x30, 0x80, 0x80, 0x40]));
    const entries = await sampledEntries('MQTT_PACKET_TOO_LARGE', floods);
    expect(entries).toBeLessThanOrEqual(seconds + 2);
    expect(entries).toBeLessThan(floods);
  });
});
