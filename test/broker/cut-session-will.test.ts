import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { closed, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * The last will of a session the gateway cuts (revocation, suspension, a policy change) is discarded and
 * audited, never published; a device that merely loses its connection still gets its will delivered
 * [MQTT-3.1.2-8]. Real mqtt.js clients, the real HTTPS API, a backend service subscribed to the will topic.
 */
let gw: TestGateway;
let service: MqttClient;
/** Every message the service received, in order, as "topic=payload". */
const seen: string[] = [];

beforeAll(async () => {
  gw = await startTestGateway();
  const { key, csr } = await deviceKeyAndCsr('will-watcher');
  const created = await gw.api<{ certificate: string; chain: string }>('POST', '/v1/services', { token: true, body: { name: 'will-watcher', csr } });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  service = await gw.connect('will-watcher', { key, cert: created.body.certificate + created.body.chain });
  service.on('message', (topic, payload) => seen.push(`${topic}=${payload.toString()}`));
  await service.subscribeAsync('devices/+/status', { qos: 1 });
});
afterAll(async () => {
  await service?.endAsync();
  await gw?.close();
});

const statusTopic = (id: string) => `devices/${id}/status`;
const will = (id: string) => ({ will: { topic: statusTopic(id), payload: Buffer.from('offline'), qos: 1 as const, retain: true } });

async function retainedOn(topic: string): Promise<string[]> {
  const persistence = (gw.gateway.broker.aedes as unknown as { persistence: { createRetainedStream(pattern: string): AsyncIterable<{ payload: Buffer }> } }).persistence;
  const found: string[] = [];
  for await (const packet of persistence.createRetainedStream(topic)) found.push(packet.payload.toString());
  return found;
}

/**
 * What the service received on the device's status topic up to a marker the test publishes there after the
 * device's connection closed. The broker hands a will to delivery before it destroys the socket, so a will
 * that went out is always seen before the marker.
 */
async function statusMessagesUntilMarker(id: string): Promise<string[]> {
  const marker = `${statusTopic(id)}=marker`;
  await service.publishAsync(statusTopic(id), 'marker', { qos: 1 });
  const deadline = Date.now() + 5000;
  while (!seen.includes(marker) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(seen).toContain(marker);
  return seen.filter((entry) => entry.startsWith(`${statusTopic(id)}=`));
}

async function expectWillDiscarded(id: string, reason: RegExp): Promise<void> {
  expect(await statusMessagesUntilMarker(id)).toEqual([`${statusTopic(id)}=marker`]);
  expect(await retainedOn(statusTopic(id))).toEqual([]);
  const entry = await gw.waitForAudit({ deviceId: id, action: 'mqtt.will' });
  expect(entry).toMatchObject({ result: 'refused', code: 'MQTT_WILL_DISCARDED', detail: { topic: statusTopic(id), retain: true } });
  expect(String(entry.detail?.reason)).toMatch(reason);
}

describe('the will of a session the gateway cuts', () => {
  it('is discarded and audited when the device is revoked', async () => {
    const device = await gw.connect('will-revoked', await gw.createDevice('will-revoked'), will('will-revoked'));
    const gone = closed(device);
    expect(await gw.api('POST', '/v1/devices/will-revoked/revoke', { token: true, body: { reason: 'keyCompromise' } })).toMatchObject({ status: 200 });
    expect(await gone).toBe(true);
    await expectWillDiscarded('will-revoked', /revoked/);
  });

  it('is discarded and audited when the device is suspended', async () => {
    const device = await gw.connect('will-suspended', await gw.createDevice('will-suspended'), will('will-suspended'));
    const gone = closed(device);
    expect(await gw.api('POST', '/v1/devices/will-suspended/suspend', { token: true, body: {} })).toMatchObject({ status: 200 });
    expect(await gone).toBe(true);
    await expectWillDiscarded('will-suspended', /suspended/);
  });

  it('cuts the session and discards its will when a policy change no longer allows the will topic', async () => {
    const own = { effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] };
    expect(await gw.api('PUT', '/v1/policies/will-narrowing', { token: true, body: { statements: [own] } })).toMatchObject({ status: 200 });
    const device = await gw.connect('will-policy', await gw.createDevice('will-policy', { policy: 'will-narrowing' }), will('will-policy'));
    const gone = closed(device);
    const narrowed = { statements: [own, { effect: 'deny', actions: ['publish'], topics: ['devices/${device.id}/status'] }] };
    expect(await gw.api('PUT', '/v1/policies/will-narrowing', { token: true, body: narrowed })).toMatchObject({ status: 200 });
    expect(await gone).toBe(true);
    await expectWillDiscarded('will-policy', /will topic/);
    // The device learns why when it comes back with the same will.
    const credential = await gw.createDevice('will-policy-2', { policy: 'will-narrowing' });
    await expect(gw.connect('will-policy-2', credential, will('will-policy-2'))).rejects.toMatchObject({ code: 5 });
  });

  it('never exists for a claim session, so a claim revocation cannot leave one behind', async () => {
    const claim = await gw.createClaim('will-claim');
    await expect(gw.connect('will-claim-sn', claim, will('will-claim-sn'))).rejects.toMatchObject({ code: 5 });
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'MQTT_WILL_DENIED' && e.actor === 'claim:will-claim-sn');
  });

  it('keeps the will of a session whose policy changed but still allows the will topic', async () => {
    const own = { effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] };
    expect(await gw.api('PUT', '/v1/policies/will-widening', { token: true, body: { statements: [own] } })).toMatchObject({ status: 200 });
    const device = await gw.connect('will-kept', await gw.createDevice('will-kept', { policy: 'will-widening' }), will('will-kept'));
    const wider = { statements: [own, { effect: 'allow', actions: ['publish'], topics: ['devices/shared/#'] }] };
    expect(await gw.api('PUT', '/v1/policies/will-widening', { token: true, body: wider })).toMatchObject({ status: 200 });
    await device.publishAsync('devices/shared/hello', 'hi', { qos: 1 }); // the new policy is in force
    device.stream.destroy();
    await until(() => seen.includes(`${statusTopic('will-kept')}=offline`), 'the will of will-kept');
  });
});

describe('the will of a session that ends abnormally', () => {
  it('is delivered, and retained, when the device drops its connection without DISCONNECT', async () => {
    const device = await gw.connect('will-dropped', await gw.createDevice('will-dropped'), will('will-dropped'));
    device.stream.destroy();
    await until(() => seen.includes(`${statusTopic('will-dropped')}=offline`), 'the will of will-dropped');
    expect(await retainedOn(statusTopic('will-dropped'))).toEqual(['offline']);
    expect(await gw.gateway.dataDir.registry.queryAudit({ deviceId: 'will-dropped', action: 'mqtt.will' })).toEqual([]);
  });

  it('is not published after a clean DISCONNECT [MQTT-3.1.2-10]', async () => {
    const device = await gw.connect('will-clean', await gw.createDevice('will-clean'), will('will-clean'));
    await device.endAsync();
    expect(await statusMessagesUntilMarker('will-clean')).toEqual([`${statusTopic('will-clean')}=marker`]);
  });
});

describe('the stored will of a session whose broker died', () => {
  /**
   * aedes' dead-broker sweep (aedes.js `_clearWills`) calls authorizePublish with no client for every will
   * stored by a broker that stopped sending heartbeats; the sweep runs every 40 s, so the test calls the
   * same hook with the same arguments.
   */
  function sweep(will: { topic: string; clientId: string }): Promise<Error | null> {
    const packet = { cmd: 'publish', topic: will.topic, payload: Buffer.from('offline'), qos: 1, retain: true, dup: false, clientId: will.clientId, brokerId: 'dead-broker' };
    const aedes = gw.gateway.broker.aedes as unknown as { authorizePublish(client: null, packet: unknown, callback: (error?: Error | null) => void): void };
    return new Promise((resolve) => aedes.authorizePublish(null, packet, (error) => resolve(error ?? null)));
  }

  it('goes out for an active device whose policy still allows the topic', async () => {
    await gw.createDevice('will-orphan-ok');
    expect(await sweep({ topic: statusTopic('will-orphan-ok'), clientId: 'will-orphan-ok' })).toBeNull();
  });

  it('is discarded and audited for a revoked device, an unknown one, or a topic the policy no longer allows', async () => {
    await gw.createDevice('will-orphan-revoked');
    expect(await gw.api('POST', '/v1/devices/will-orphan-revoked/revoke', { token: true, body: { reason: 'keyCompromise' } })).toMatchObject({ status: 200 });
    expect(await sweep({ topic: statusTopic('will-orphan-revoked'), clientId: 'will-orphan-revoked' })).toMatchObject({ message: 'MQTT_WILL_DISCARDED' });
    const revoked = await gw.waitForAudit({ deviceId: 'will-orphan-revoked', action: 'mqtt.will' });
    expect(revoked).toMatchObject({ result: 'refused', code: 'MQTT_WILL_DISCARDED', detail: { reason: 'device revoked', brokerId: 'dead-broker' } });

    expect(await sweep({ topic: statusTopic('will-orphan-nobody'), clientId: 'will-orphan-nobody' })).toMatchObject({ message: 'MQTT_WILL_DISCARDED' });
    await gw.createDevice('will-orphan-other');
    expect(await sweep({ topic: statusTopic('will-orphan-ok'), clientId: 'will-orphan-other' })).toMatchObject({ message: 'MQTT_WILL_DISCARDED' });
    const forbidden = await gw.waitForAudit({ deviceId: 'will-orphan-other', action: 'mqtt.will' });
    expect(forbidden.detail).toMatchObject({ reason: 'will topic no longer allowed by the policy' });
  });
});
