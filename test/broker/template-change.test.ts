import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { counterValue } from '../helpers/flood-fixture.ts';
import { closed, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * A template change reaches the open sessions of its devices at once, as a policy edit does: switching the
 * template's policy recompiles them (subscriptions the new policy forbids are removed, publishes it forbids
 * refused), and its new traffic limits apply. Real mqtt.js clients and the real HTTPS API.
 */
let gw: TestGateway;
let service: MqttClient;

beforeAll(async () => {
  gw = await startTestGateway();
  const { key, csr } = await deviceKeyAndCsr('tpl-backend');
  const created = await gw.api<{ certificate: string; chain: string }>('POST', '/v1/services', { token: true, body: { name: 'tpl-backend', csr } });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  service = await gw.connect('tpl-backend', { key, cert: created.body.certificate + created.body.chain });
});
afterAll(async () => {
  await service?.endAsync();
  await gw?.close();
});

async function admin(method: string, path: string, body: unknown): Promise<void> {
  const response = await gw.api(method, path, { token: true, body });
  expect(response.status, `${method} ${path}: ${JSON.stringify(response.body)}`).toBeLessThan(300);
}

/** Topics a client received, in order. */
function recorder(client: MqttClient): string[] {
  const received: string[] = [];
  client.on('message', (topic) => received.push(topic));
  return received;
}

describe('a template change reaches open sessions', () => {
  it("switching the template's policy removes subscriptions and refuses publishes the new policy forbids", async () => {
    await admin('PUT', '/v1/policies/tpl-a', { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] }] });
    await admin('PUT', '/v1/policies/tpl-b', { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/cmd/#'] }] });
    await admin('POST', '/v1/templates', { name: 'tpl-live', policy: 'tpl-a' });
    const device = await gw.connect('tpl-dev-1', await gw.createDevice('tpl-dev-1', { template: 'tpl-live' }));
    // Same template, but its own policy: a template change must leave it alone.
    const pinned = await gw.connect('tpl-dev-2', await gw.createDevice('tpl-dev-2', { template: 'tpl-live', policy: 'tpl-a' }));
    const received = recorder(device);
    const receivedPinned = recorder(pinned);
    await device.subscribeAsync(['devices/tpl-dev-1/x', 'devices/tpl-dev-1/cmd/#'], { qos: 1 });
    await pinned.subscribeAsync(['devices/tpl-dev-2/x', 'devices/tpl-dev-2/cmd/#'], { qos: 1 });
    await service.publishAsync('devices/tpl-dev-1/x', 'before', { qos: 1 });
    await until(() => received.includes('devices/tpl-dev-1/x'), 'the first message on X');

    await admin('POST', '/v1/templates', { name: 'tpl-live', policy: 'tpl-b', limits: { publishPerSecond: 5 } });
    const removed = await gw.waitForAudit({ deviceId: 'tpl-dev-1', action: 'mqtt.subscribe' }, (e) => e.code === 'ACL_SUBSCRIBE_DENIED');
    expect(removed.detail).toMatchObject({ filter: 'devices/tpl-dev-1/x', reason: 'template changed' });

    // X no longer delivered; the command topic still is (and comes after X, so X would have been seen).
    received.length = 0;
    await service.publishAsync('devices/tpl-dev-1/x', 'after', { qos: 1 });
    await service.publishAsync('devices/tpl-dev-1/cmd/ping', 'after', { qos: 1 });
    await until(() => received.includes('devices/tpl-dev-1/cmd/ping'), 'the command after the change');
    expect(received).toEqual(['devices/tpl-dev-1/cmd/ping']);

    // The device with its own policy is untouched.
    await service.publishAsync('devices/tpl-dev-2/x', 'after', { qos: 1 });
    await service.publishAsync('devices/tpl-dev-2/cmd/ping', 'after', { qos: 1 });
    await until(() => receivedPinned.includes('devices/tpl-dev-2/cmd/ping'), 'the pinned device command');
    expect(receivedPinned.filter((topic) => topic === 'devices/tpl-dev-2/x')).toHaveLength(1);

    // The template's new rate limit applies to the open session: 50 QoS 0 at once, the bucket holds 10.
    const dropped = (text: string) => counterValue(text, 'fleetgate_mqtt_publish_dropped_total', 'reason="rate"');
    const droppedBefore = dropped((await gw.api<string>('GET', '/metrics')).body as unknown as string);
    for (let i = 0; i < 50; i++) device.publish('devices/tpl-dev-1/cmd/fast', 'x', { qos: 0 });
    await device.publishAsync('devices/tpl-dev-1/cmd/sure', 'x', { qos: 1 });
    const droppedAfter = dropped((await gw.api<string>('GET', '/metrics')).body as unknown as string);
    expect(droppedAfter - droppedBefore).toBeGreaterThan(0);

    // A publish the new policy forbids is refused: the connection closes (MQTT 3.1.1 has no negative PUBACK).
    const gone = closed(device);
    device.publish('devices/tpl-dev-1/x', 'refused', { qos: 1 });
    expect(await gone).toBe(true);
    await gw.waitForAudit({ deviceId: 'tpl-dev-1', action: 'mqtt.publish' }, (e) => e.code === 'ACL_PUBLISH_DENIED' && e.detail?.topic === 'devices/tpl-dev-1/x');
    expect(pinned.connected).toBe(true);
    await pinned.endAsync();
  });
});
