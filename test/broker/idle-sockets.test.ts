import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * An attacker with nothing but raw TCP. A socket that never speaks TLS (or speaks it and never sends
 * CONNECT) must not hold a connection slot beyond the connect timeout, and one host must not be able to take
 * the whole handshake budget: README "Flow control and admission limits". Attackers connect from other
 * loopback addresses (127.0.0.0/8 all reach the listener) so that per-source limits tell them from devices.
 */

/** Raw TCP sockets that connect and then send nothing; `closed` counts those the server closed. */
function idleSockets(port: number, count: number, localAddress: string) {
  const sockets: Socket[] = [];
  let closed = 0;
  for (let i = 0; i < count; i++) {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress });
    socket.on('error', () => {});
    socket.on('close', () => closed++);
    sockets.push(socket);
  }
  return {
    sockets,
    closed: () => closed,
    destroy: () => sockets.forEach((socket) => socket.destroy()),
  };
}

/** A TLS client (no client certificate) from `localAddress`. */
function tlsFrom(gw: TestGateway, localAddress: string) {
  return tlsConnect({ socket: netConnect({ host: '127.0.0.1', port: gw.mqttPort, localAddress }), ca: gw.ca, servername: 'localhost' });
}

async function roundTrip(gw: TestGateway, id: string): Promise<void> {
  const client = await gw.connect(id, await gw.createDevice(id));
  try {
    await client.subscribeAsync(`devices/${id}/ping`);
    const received = nextMessage(client, `devices/${id}/ping`);
    await client.publishAsync(`devices/${id}/ping`, 'pong');
    expect(await received).toBe('pong');
  } finally {
    await client.endAsync();
  }
}

describe('the connect timeout, timed from the TCP connection', () => {
  let gw: TestGateway;
  const cleanup: Array<() => void> = [];
  beforeAll(async () => {
    gw = await startTestGateway({ FLEETGATE_CONNECT_TIMEOUT_MS: '400' });
  });
  afterEach(() => cleanup.splice(0).forEach((undo) => undo()));
  afterAll(async () => {
    await gw?.close();
  });

  // Audit entries are sampled per code and second: an entry carries the details of the first refusal it
  // stands for. Tests that read those details come before others that are refused with the same code.
  it('closes a TLS connection that completes the handshake but never sends CONNECT', async () => {
    const socket = tlsFrom(gw, '127.0.0.4');
    socket.on('error', () => {});
    cleanup.push(() => socket.destroy());
    await once(socket, 'secureConnect');
    await until(() => gw.gateway.broker.pendingHandshakes() === 0, 'the handshake slot to be released once TLS is done', 5000);
    let closed = socket.destroyed;
    socket.on('close', () => (closed = true));
    await until(() => closed, 'the gateway to close a TLS connection that never sent CONNECT', 10_000);
    const entry = await gw.waitForAudit({ action: 'mqtt.connection', result: 'refused' }, (e) => e.code === 'MQTT_CONNECT_TIMEOUT' && e.actor === 'anonymous@127.0.0.4');
    expect(entry.detail).toMatchObject({ stage: 'mqtt' });
  });

  it('closes sockets that never send a ClientHello, frees their handshake slots and audits it (sampled)', async () => {
    const idle = idleSockets(gw.mqttPort, 20, '127.0.0.2');
    cleanup.push(idle.destroy);
    await until(() => idle.closed() === 20, 'the gateway to close 20 sockets that sent nothing', 10_000);
    await until(() => gw.gateway.broker.pendingHandshakes() === 0, 'every handshake slot to be released', 5000);
    const entry = await gw.waitForAudit({ action: 'mqtt.connection', result: 'refused' }, (e) => e.code === 'MQTT_CONNECT_TIMEOUT' && e.actor === 'anonymous@127.0.0.2');
    expect(entry.detail).toMatchObject({ remote: '127.0.0.2', stage: 'tls' });
  });

  it('closes a socket that dribbles a ClientHello one byte at a time (a slow handshake is still timed out)', async () => {
    // The start of a TLS 1.2 ClientHello record: each byte resets an idle timer, never a deadline.
    const hello = Buffer.from('16030100c8010000c40303', 'hex');
    const socket = netConnect({ host: '127.0.0.1', port: gw.mqttPort, localAddress: '127.0.0.3' });
    socket.on('error', () => {});
    cleanup.push(() => socket.destroy());
    let sent = 0;
    const drip = setInterval(() => {
      if (!socket.destroyed) socket.write(hello.subarray(sent % hello.length, (sent % hello.length) + 1));
      sent++;
    }, 100);
    cleanup.push(() => clearInterval(drip));
    let closed = false;
    socket.on('close', () => (closed = true));
    await until(() => closed, 'the gateway to close a handshake that never completes', 10_000);
    expect(sent).toBeGreaterThan(0);
    await until(() => gw.gateway.broker.pendingHandshakes() === 0, 'the handshake slot to be released', 5000);
  });


  it('leaves an admitted session alone once the connect timeout has passed', async () => {
    const client = await gw.connect('steady-1', await gw.createDevice('steady-1'));
    try {
      // An idle socket opened after the device was admitted is closed by the timeout: at least that much
      // time has passed for the device too.
      const idle = idleSockets(gw.mqttPort, 1, '127.0.0.5');
      cleanup.push(idle.destroy);
      await until(() => idle.closed() === 1, 'the idle socket to be closed', 10_000);
      expect(client.connected).toBe(true);
      await client.subscribeAsync('devices/steady-1/ping');
      const received = nextMessage(client, 'devices/steady-1/ping');
      await client.publishAsync('devices/steady-1/ping', 'still here');
      expect(await received).toBe('still here');
    } finally {
      await client.endAsync();
    }
  });
});

describe('per-source limits', () => {
  let gw: TestGateway;
  const cleanup: Array<() => void> = [];
  beforeAll(async () => {
    // A long connect timeout: here the per-source limits, not the timeout, must keep the gateway open.
    gw = await startTestGateway({
      FLEETGATE_CONNECT_TIMEOUT_MS: '60000',
      FLEETGATE_MAX_PENDING_HANDSHAKES: '16',
      FLEETGATE_MAX_PENDING_HANDSHAKES_PER_SOURCE: '4',
      FLEETGATE_MAX_CONNECTIONS_PER_SOURCE: '6',
    });
  });
  afterEach(() => cleanup.splice(0).forEach((undo) => undo()));
  afterAll(async () => {
    await gw?.close();
  });

  // As above: the test that reads an audit entry's details runs first.
  it('caps the open connections of one host, handshake done or not', async () => {
    // Six TLS connections that never send CONNECT hold the host's six connections (the timeout is long).
    // One after the other: together they would also meet the limit of four handshakes at a time.
    const held = [];
    for (let i = 0; i < 6; i++) {
      const socket = tlsFrom(gw, '127.0.0.7');
      socket.on('error', () => {});
      cleanup.push(() => socket.destroy());
      await once(socket, 'secureConnect');
      held.push(socket);
    }
    expect(held.every((socket) => !socket.destroyed)).toBe(true);
    const seventh = idleSockets(gw.mqttPort, 1, '127.0.0.7');
    cleanup.push(seventh.destroy);
    await until(() => seventh.closed() === 1, 'the seventh connection of the host to be closed', 5000);
    const entry = await gw.waitForAudit({ action: 'mqtt.connection', result: 'refused' }, (e) => e.code === 'MQTT_SOURCE_LIMIT');
    expect(entry.detail).toMatchObject({ remote: '127.0.0.7', limit: 'connections', max: 6 });
    await roundTrip(gw, 'neighbour-2');
  });

  it('keeps one host from taking every handshake slot: a device still connects while it holds its share', async () => {
    // As many idle sockets as the whole gateway budget, all from one host.
    const idle = idleSockets(gw.mqttPort, 16, '127.0.0.6');
    cleanup.push(idle.destroy);
    await until(() => gw.gateway.broker.pendingHandshakes() + idle.closed() === 16, 'every idle socket to be accepted or refused', 10_000);
    expect(gw.gateway.broker.pendingHandshakes()).toBe(4);
    expect(idle.closed()).toBe(12);
    const entry = await gw.waitForAudit({ action: 'mqtt.connection', result: 'refused' }, (e) => e.code === 'MQTT_SOURCE_LIMIT' && e.actor === 'anonymous@127.0.0.6');
    expect(entry.detail).toMatchObject({ remote: '127.0.0.6', limit: 'handshakes', max: 4 });

    await roundTrip(gw, 'neighbour-1');

    idle.destroy();
    await until(() => gw.gateway.broker.pendingHandshakes() === 0, 'every handshake slot to be released when the host leaves', 5000);
  });

});
