import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientById } from '../../broker/aedes-internals.ts';
import { type DuplexGateway, startDuplexGateway } from '../helpers/duplex-gateway.ts';
import { closed, nextMessage, subscribeGranted } from '../helpers/test-gateway.ts';

/**
 * Session admission and topic ACLs as the aedes hooks decide them (broker/session-hooks.ts over the session
 * table), driven through in-memory stream pairs into the real gateway core (test/helpers/duplex-gateway.ts):
 * no TLS, no ports. What only a socket shows (who the TLS peer is, budgets, packet sizes) stays over real
 * mTLS in test/broker/mtls-admission.test.ts and the other socket tests.
 */
let gw: DuplexGateway;

beforeAll(async () => {
  gw = await startDuplexGateway();
});
afterAll(async () => {
  await gw?.close();
});

async function expectRefused(promise: Promise<unknown>, returnCode: number): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code: returnCode });
}

describe('CONNECT', () => {
  it('admits a device the registry vouches for, under its own id, and lists its session', async () => {
    const client = await gw.connect('duplex-1', await gw.createDevice('duplex-1'));
    expect(clientById(gw.core.aedes, 'duplex-1')).toBeDefined();
    expect(gw.core.sessions().map((s) => s.clientId)).toContain('duplex-1');
    await gw.waitForAudit({ deviceId: 'duplex-1', action: 'mqtt.connect', result: 'ok' });
    await client.endAsync();
  });

  it('refuses a connection whose handshake proved nothing with CONNACK 5, and audits it (sampled)', async () => {
    await expectRefused(gw.connect('anonymous-1', undefined), 5);
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_NO_CLIENT_CERT');
  });

  it('refuses a suspended device and a revoked device', async () => {
    const suspended = await gw.createDevice('sensor-suspended');
    const revoked = await gw.createDevice('sensor-revoked');
    await gw.registry.setDeviceStatus({ id: 'sensor-suspended', status: 'suspended', reason: 'maintenance', audit: { actor: 'test', action: 'device.suspend', result: 'ok' } });
    await gw.registry.setDeviceStatus({ id: 'sensor-revoked', status: 'revoked', reason: 'keyCompromise', audit: { actor: 'test', action: 'device.revoke', result: 'ok' } });
    await expectRefused(gw.connect('sensor-suspended', suspended), 5);
    await expectRefused(gw.connect('sensor-revoked', revoked), 5);
    await gw.waitForAudit({ deviceId: 'sensor-suspended', result: 'refused' }, (e) => e.code === 'AUTH_DEVICE_SUSPENDED');
    await gw.waitForAudit({ deviceId: 'sensor-revoked', result: 'refused' }, (e) => e.code === 'AUTH_DEVICE_REVOKED');
  });

  it('refuses a client id that is not the device id with CONNACK 2 (identifier rejected)', async () => {
    const credential = await gw.createDevice('sensor-spoof');
    await gw.createDevice('sensor-victim');
    await expectRefused(gw.connect('sensor-victim', credential), 2);
    await expectRefused(gw.connect('', credential, { clean: true }), 2);
    await gw.waitForAudit({ deviceId: 'sensor-spoof', result: 'refused' }, (e) => e.code === 'AUTH_CLIENT_ID_MISMATCH');
  });

  it('refuses a will on a topic outside the policy', async () => {
    const credential = await gw.createDevice('sensor-will');
    await expectRefused(gw.connect('sensor-will', credential, { will: { topic: 'devices/other/status', payload: Buffer.from('gone'), qos: 0, retain: false } }), 5);
    await gw.waitForAudit({ deviceId: 'sensor-will', result: 'refused' }, (e) => e.code === 'MQTT_WILL_DENIED');
    const ok = await gw.connect('sensor-will', credential, { will: { topic: 'devices/sensor-will/status', payload: Buffer.from('gone'), qos: 0, retain: false } });
    await ok.endAsync();
  });
});

describe('topic ACLs', () => {
  it('lets a device publish and subscribe on its own topics', async () => {
    const client = await gw.connect('sensor-1', await gw.createDevice('sensor-1'));
    await client.subscribeAsync('devices/sensor-1/commands/#');
    const received = nextMessage(client, 'devices/sensor-1/commands/reboot');
    await client.publishAsync('devices/sensor-1/commands/reboot', 'now', { qos: 1 });
    expect(await received).toBe('now');
    await client.endAsync();
  });

  it('disconnects a device publishing to another device topic, which never sees the message', async () => {
    const attacker = await gw.connect('acl-a', await gw.createDevice('acl-a'));
    const victim = await gw.connect('acl-b', await gw.createDevice('acl-b'));
    await victim.subscribeAsync('devices/acl-b/#');
    const seen = nextMessage(victim, 'devices/acl-b/commands', 500);
    attacker.publish('devices/acl-b/commands', 'evil');
    expect(await closed(attacker)).toBe(true);
    expect(await seen).toBeUndefined();
    const entry = await gw.waitForAudit({ deviceId: 'acl-a', action: 'mqtt.publish' });
    expect(entry).toMatchObject({ result: 'refused', code: 'ACL_PUBLISH_DENIED', detail: expect.objectContaining({ topic: 'devices/acl-b/commands' }) });
    await victim.endAsync();
    attacker.end(true);
  });

  it.each([
    ['#', 'ACL_SUBSCRIBE_DENIED'],
    ['devices/+/telemetry', 'ACL_SUBSCRIBE_DENIED'],
    ['devices/#', 'ACL_SUBSCRIBE_DENIED'],
    ['+/acl-sub/#', 'ACL_SUBSCRIBE_DENIED'],
    ['$SYS/#', 'ACL_RESERVED_TOPIC'],
    ['$fleetgate/enroll/acl-sub/accepted', 'ACL_RESERVED_TOPIC'],
  ])('answers SUBACK 0x80 to %s and keeps the session', async (filter, code) => {
    const client = await gw.connect('acl-sub', await credentialFor('acl-sub'));
    expect(await subscribeGranted(client, [filter, 'devices/acl-sub/ok'])).toEqual([128, 0]);
    expect(client.connected).toBe(true);
    await gw.waitForAudit({ deviceId: 'acl-sub', action: 'mqtt.subscribe' }, (e) => e.code === code && (e.detail as { filter?: string }).filter === filter);
    await client.endAsync();
  });

  it('checks receive on every delivery, not only at subscribe time', async () => {
    await gw.registry.putPolicy(
      'no-secrets',
      {
        statements: [
          { effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] },
          { sid: 'hide-secrets', effect: 'deny', actions: ['receive'], topics: ['devices/${device.id}/secret'] },
        ],
      },
      { actor: 'test', action: 'policy.put', result: 'ok' },
    );
    const client = await gw.connect('recv-1', await gw.createDevice('recv-1', { policy: 'no-secrets' }));
    await client.subscribeAsync('devices/recv-1/#');
    const secret = nextMessage(client, 'devices/recv-1/secret', 500);
    await client.publishAsync('devices/recv-1/secret', 's3cret', { qos: 1 });
    const visible = nextMessage(client, 'devices/recv-1/visible');
    await client.publishAsync('devices/recv-1/visible', 'hello', { qos: 1 });
    expect(await visible).toBe('hello');
    expect(await secret).toBeUndefined();
    await gw.waitForAudit({ deviceId: 'recv-1', action: 'mqtt.receive' }, (e) => e.code === 'ACL_RECEIVE_DENIED');
    await client.endAsync();
  });
});

describe('claim sessions', () => {
  it('confines a claim certificate to its own enrollment topics', async () => {
    const claim = await gw.createClaim('batch-1');
    const client = await gw.connect('serial-0001', claim);
    const granted = await subscribeGranted(client, [
      '$fleetgate/enroll/serial-0001/accepted',
      '$fleetgate/enroll/serial-0001/rejected',
      '$fleetgate/enroll/serial-0002/accepted',
      '$fleetgate/enroll/+/accepted',
      'devices/serial-0001/#',
      '#',
    ]);
    expect(granted).toEqual([0, 0, 128, 128, 128, 128]);
    client.publish('devices/serial-0001/telemetry', 'x');
    expect(await closed(client)).toBe(true);
    await gw.waitForAudit({ actor: 'claim:serial-0001', action: 'mqtt.publish' }, (e) => e.code === 'ACL_CLAIM_SCOPE');
  });

  it('keeps a claim session in its own client-id namespace, so it cannot take over the device it enrolls', async () => {
    const client = await gw.connect('serial-0004', await gw.createClaim('batch-2'));
    expect(clientById(gw.core.aedes, 'serial-0004')).toBeUndefined();
    expect(clientById(gw.core.aedes, '$claim/serial-0004')).toBeDefined();
    await client.endAsync();
  });

  it('refuses an expired claim', async () => {
    const claim = await gw.createClaim('batch-old', { expiresAt: new Date(Date.now() - 1000) });
    await expectRefused(gw.connect('serial-0003', claim), 5);
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_CLAIM_INVALID');
  });
});

describe('live sessions', () => {
  it('closes every live session of a device at once when it is revoked', async () => {
    const credential = await gw.createDevice('kick-1');
    const client = await gw.connect('kick-1', credential);
    await gw.registry.setDeviceStatus({ id: 'kick-1', status: 'revoked', reason: 'keyCompromise', audit: { actor: 'test', action: 'device.revoke', result: 'ok' } });
    expect(gw.core.disconnect('kick-1', 'revoked')).toBe(true);
    expect(await closed(client)).toBe(true);
    await expectRefused(gw.connect('kick-1', credential), 5);
  });
});

const credentials = new Map<string, Awaited<ReturnType<DuplexGateway['createDevice']>>>();
async function credentialFor(id: string) {
  let credential = credentials.get(id);
  if (!credential) {
    credential = await gw.createDevice(id);
    credentials.set(id, credential);
  }
  return credential;
}
