import type { IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';
import { openRaw, type RawConnection } from './raw-mqtt.ts';

/**
 * The `tls-handshake × none` cell at scale (docs/THREAT-MODEL.md, R8): one host opening idle TCP sockets
 * that never send a ClientHello must not lock real devices out. The gateway's handshake budget is set to the
 * number of sockets, so on a gateway that keeps idle sockets forever the budget is gone. SECURITY_RAW_SOCKETS
 * raises the count (512 is the default budget of a real gateway); the default keeps the suite fast.
 */
const sockets = Number(process.env.SECURITY_RAW_SOCKETS ?? 64);
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway({ FLEETGATE_MAX_PENDING_HANDSHAKES: String(sockets), FLEETGATE_CONNECT_TIMEOUT_MS: '1000' });
});
afterAll(async () => {
  await gw?.close();
});

describe('raw TCP from one host', () => {
  it(`${sockets} idle sockets are closed, and a device from another address gets in meanwhile`, async () => {
    const device = await gw.createDevice('dev-raw-1');
    const idle: RawConnection[] = await Promise.all(Array.from({ length: sockets }, () => openRaw({ port: gw.mqttPort, ca: gw.ca, tcpOnly: true, localAddress: '127.0.0.1' })));
    try {
      // The real device comes from another address of the loopback network (Linux routes all of 127/8 to lo).
      await until(async () => {
        try {
          await (await gw.connect('dev-raw-1', device, { localAddress: '127.0.0.2', connectTimeout: 2000 } as Partial<IClientOptions>)).endAsync();
          return true;
        } catch {
          return false;
        }
      }, 'a real device to connect while one host holds idle sockets');
      await until(() => idle.every((socket) => socket.isClosed()), 'the gateway to close every idle socket');
    } finally {
      for (const socket of idle) socket.destroy();
    }
    // And from the attacker's own address too, once its sockets are gone.
    await (await gw.connect('dev-raw-1', device)).endAsync();
    expect(idle.filter((socket) => !socket.isClosed())).toEqual([]);
  });
});
