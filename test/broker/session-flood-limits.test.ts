import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeConnect } from '../../bench/mqtt-wire.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

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

describe('refusals of an admitted session', () => {
  it('are sampled per session: a SUBSCRIBE with 500 forbidden filters leaves a few audit entries that count them all', async () => {
    const device = await gw.createDevice('flooder-1');
    const session = await gw.connect('flooder-1', device);
    const filters = Array.from({ length: 500 }, (_, n) => `devices/other-${n}/#`);
    await session.subscribeAsync(filters).catch(() => undefined); // every filter gets SUBACK 0x80
    const { registry } = gw.gateway.dataDir;
    const entries = async () => (await registry.queryAudit({ deviceId: 'flooder-1', action: 'mqtt.subscribe', result: 'refused', limit: 1000 })).filter((e) => e.code === 'ACL_SUBSCRIBE_DENIED');
    await until(async () => (await entries()).reduce((sum, e) => sum + Number((e.detail as { refused?: unknown }).refused ?? 1), 0) === 500, 'entries counting all 500 refusals', 10_000);
    expect((await entries()).length).toBeLessThanOrEqual(4);
    expect(session.connected).toBe(true);
    await session.endAsync();
  });
});
