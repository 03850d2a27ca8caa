import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeConnect } from '../../bench/mqtt-wire.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The CONNECT rate limit sheds load in a reconnect storm. Peers whose TLS handshake proved no identity
 * (no client certificate) must not draw on it: otherwise anyone on the network could keep every device out
 * with CONNACK 3 by opening certificate-less sessions as fast as the budget refills.
 */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway({ FLEETGATE_CONNECT_RATE: '5' });
});
afterAll(async () => {
  await gw?.close();
});

async function connectWithoutCertificate(): Promise<void> {
  const socket = tlsConnect({ host: '127.0.0.1', port: gw.mqttPort, ca: gw.ca, servername: 'localhost' });
  socket.on('error', () => {});
  socket.resume();
  await once(socket, 'secureConnect');
  socket.write(encodeConnect('nobody', 30));
  if (!socket.destroyed) await once(socket, 'close');
}

describe('the CONNECT budget', () => {
  it('is not spent by peers without a client certificate', async () => {
    for (let round = 0; round < 4; round++) await Promise.all(Array.from({ length: 10 }, connectWithoutCertificate));
    const device = await gw.createDevice('budget-1');
    const session = await gw.connect('budget-1', device);
    expect(session.connected).toBe(true);
    await session.endAsync();
  });
});
