import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counterValue } from '../helpers/flood-fixture.ts';
import { runCli } from '../helpers/fleetgate-process.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/** Per-template traffic limits: set through the API and the CLI, enforced on the template's devices. */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

describe('template limits in the API and CLI', () => {
  it('stores limits, merges later changes into them, and removes one set to null', async () => {
    const created = await gw.api<{ limits: unknown }>('POST', '/v1/templates', { token: true, body: { name: 'meters', limits: { publishPerSecond: 5 } } });
    expect(created.status).toBe(201);
    expect(created.body.limits).toEqual({ publishPerSecond: 5 });
    const merged = await gw.api<{ limits: unknown }>('POST', '/v1/templates', { token: true, body: { name: 'meters', limits: { outboundQueueMessages: 10 } } });
    expect(merged.body.limits).toEqual({ publishPerSecond: 5, outboundQueueMessages: 10 });
    const unchanged = await gw.api<{ limits: unknown }>('POST', '/v1/templates', { token: true, body: { name: 'meters', validityDays: 30 } });
    expect(unchanged.body.limits).toEqual({ publishPerSecond: 5, outboundQueueMessages: 10 });
    const removed = await gw.api<{ limits: unknown }>('POST', '/v1/templates', { token: true, body: { name: 'meters', limits: { outboundQueueMessages: null } } });
    expect(removed.body.limits).toEqual({ publishPerSecond: 5 });
  });

  it('refuses limits that are not positive integers, and unknown limits', async () => {
    for (const limits of [{ publishPerSecond: 0 }, { publishPerSecond: 1.5 }, { publishPerSecond: '10' }, { burst: 5 }]) {
      const response = await gw.api<{ code: string }>('POST', '/v1/templates', { token: true, body: { name: 'meters', limits } });
      expect(response.status, JSON.stringify(limits)).toBe(400);
      expect(response.body.code).toBe('REQUEST_INVALID');
    }
  });

  it('sets limits with `template set` and shows them in `template list`', async () => {
    const api = ['--data-dir', gw.dataDirPath, '--api', `https://localhost:${gw.apiPort}`];
    const set = await runCli(['template', 'set', '--name', 'trackers', '--publish-rate', '7', '--queue-bytes', '65536', ...api]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('7 msg/s');
    const listed = await runCli(['template', 'list', '--json', ...api]);
    expect(JSON.parse(listed.stdout).items).toContainEqual(expect.objectContaining({ name: 'trackers', limits: { publishPerSecond: 7, outboundQueueBytes: 65536 } }));
    const reset = await runCli(['template', 'set', '--name', 'trackers', '--publish-rate', 'default', '--json', ...api]);
    expect(JSON.parse(reset.stdout).limits).toEqual({ outboundQueueBytes: 65536 });
    const bad = await runCli(['template', 'set', '--name', 'trackers', '--publish-rate', 'fast', ...api]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('REQUEST_INVALID');
  });
});

describe('limits enforced on the devices of a template', () => {
  it('drops QoS 0 over the publish rate (counted), and holds QoS 1 back without losing any', async () => {
    await gw.api('POST', '/v1/templates', { token: true, body: { name: 'slow-meters', limits: { publishPerSecond: 5 } } });
    const client = await gw.connect('meter-1', await gw.createDevice('meter-1', { template: 'slow-meters' }));
    await client.subscribeAsync('devices/meter-1/#', { qos: 1 });
    const received: string[] = [];
    client.on('message', (topic) => received.push(topic));

    // 50 QoS 0 at once: the bucket holds 2 s worth (10), the rest is dropped.
    for (let i = 0; i < 50; i++) client.publish('devices/meter-1/fast', 'x', { qos: 0 });
    // 12 QoS 1: each is acknowledged once the rate allows it; none is lost.
    await Promise.all(Array.from({ length: 12 }, (_, i) => client.publishAsync('devices/meter-1/sure', `m${i}`, { qos: 1 })));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received.filter((topic) => topic.endsWith('/sure'))).toHaveLength(12);
    const fast = received.filter((topic) => topic.endsWith('/fast')).length;
    expect(fast).toBeGreaterThan(0);
    expect(fast).toBeLessThan(50);
    expect(client.connected).toBe(true);

    const metrics = (await gw.api<string>('GET', '/metrics')).body as unknown as string;
    expect(counterValue(metrics, 'fleetgate_mqtt_publish_dropped_total', 'reason="rate"')).toBe(50 - fast);
    expect(counterValue(metrics, 'fleetgate_mqtt_publish_throttled_total')).toBeGreaterThan(0);
    await client.endAsync();
  });

  it('delivers every retained message on SUBSCRIBE, even more than the outbound queue limit', async () => {
    await gw.api('POST', '/v1/templates', { token: true, body: { name: 'small-queue', limits: { outboundQueueMessages: 5, outboundQueueBytes: 100_000 } } });
    const credential = await gw.createDevice('lamp-1', { template: 'small-queue' });
    const publisher = await gw.connect('lamp-1', credential);
    // 1.3 MB of retained state: far more than the queue limit, and more than a socket takes at once.
    await Promise.all(Array.from({ length: 40 }, (_, i) => publisher.publishAsync(`devices/lamp-1/state/${i}`, Buffer.alloc(32 * 1024, i), { qos: 1, retain: true })));
    await publisher.endAsync();
    const subscriber = await gw.connect('lamp-1', credential);
    const received = new Set<string>();
    subscriber.on('message', (topic) => received.add(topic));
    await subscriber.subscribeAsync('devices/lamp-1/state/+', { qos: 1 });
    for (let attempt = 0; attempt < 100 && received.size < 40; attempt++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(received.size).toBe(40);
    expect(subscriber.connected).toBe(true);
    await subscriber.endAsync();
  });

  it('closes a device that keeps publishing over its limit, with an audit entry', async () => {
    const strict = await startTestGateway({ FLEETGATE_PUBLISH_RATE: '20', FLEETGATE_OVER_LIMIT_GRACE_MS: '500' });
    try {
      const client = await strict.connect('chatty-1', await strict.createDevice('chatty-1'));
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      const timer = setInterval(() => {
        for (let i = 0; i < 20; i++) client.publish('devices/chatty-1/t', 'x', { qos: 0 });
      }, 20);
      await closed;
      clearInterval(timer);
      const entry = await strict.waitForAudit({ action: 'mqtt.flow' }, (e) => e.code === 'MQTT_PUBLISH_RATE_EXCEEDED');
      expect(entry).toMatchObject({ deviceId: 'chatty-1', result: 'refused' });
      expect(entry.detail).toMatchObject({ limits: { publishPerSecond: 20 } });
      client.end(true);
    } finally {
      await strict.close();
    }
  });
});
