import { connect as tlsConnect } from 'node:tls';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closed, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/** Bad input of any kind is refused, audited, and never takes the gateway down for everyone else. */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

async function healthyDeviceRoundTrip(id: string): Promise<void> {
  const client = await gw.connect(id, await gw.createDevice(id));
  await client.subscribeAsync(`devices/${id}/ping`);
  const received = nextMessage(client, `devices/${id}/ping`);
  await client.publishAsync(`devices/${id}/ping`, 'pong');
  expect(await received).toBe('pong');
  await client.endAsync();
}

describe('abusive input', () => {
  it('cuts a packet larger than the limit as soon as its header arrives, and accepts one below it', async () => {
    const client = await gw.connect('big-1', await gw.createDevice('big-1'));
    await client.publishAsync('devices/big-1/blob', Buffer.alloc(200 * 1024, 1), { qos: 1 });
    client.publish('devices/big-1/blob', Buffer.alloc(300 * 1024, 1), { qos: 0 });
    expect(await closed(client)).toBe(true);
    const entry = await gw.waitForAudit({ action: 'mqtt.packet' }, (e) => e.code === 'MQTT_PACKET_TOO_LARGE');
    expect(entry.detail).toMatchObject({ maxPacketBytes: 256 * 1024 });
    client.end(true);
    await healthyDeviceRoundTrip('big-after');
  });

  it('closes a connection that sends bytes that are not MQTT', async () => {
    const credential = await gw.createDevice('garbage-1');
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.mqttPort, ca: gw.ca, key: credential.key, cert: credential.cert, servername: 'localhost' });
    await once(socket, 'secureConnect');
    socket.on('error', () => {});
    socket.write(Buffer.from([0xf0, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x13, 0x37]));
    await once(socket, 'close');
    await healthyDeviceRoundTrip('garbage-after');
  });

  it('closes a TLS connection that never sends CONNECT, once the connect timeout passes', async () => {
    const quiet = await startTestGateway({ FLEETGATE_CONNECT_TIMEOUT_MS: '300' });
    try {
      const socket = tlsConnect({ host: '127.0.0.1', port: quiet.mqttPort, ca: quiet.ca, servername: 'localhost' });
      socket.on('error', () => {});
      await once(socket, 'secureConnect');
      const started = Date.now();
      await once(socket, 'close');
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await quiet.close();
    }
  });

  it('refuses every new session with CONNACK 3 when the registry cannot be read (fail closed)', async () => {
    const broken = await startTestGateway();
    try {
      const credential = await broken.createDevice('unlucky-1');
      await broken.gateway.dataDir.registry.close();
      await expect(broken.connect('unlucky-1', credential)).rejects.toMatchObject({ code: 3 });
    } finally {
      await broken.close();
    }
  });
});

describe('revocation events', () => {
  it('closes the session as soon as a device.status event arrives on the bus', async () => {
    const client = await gw.connect('bus-1', await gw.createDevice('bus-1'));
    await gw.gateway.events.publish({ type: 'device.status', deviceId: 'bus-1', status: 'suspended' });
    expect(await closed(client, 1000)).toBe(true);
  });
});
