import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closed, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

const audit = { actor: 'test', action: 'policy.put', result: 'ok' as const };

describe('policy changes reach open sessions', () => {
  it('stops deliveries on a subscription the new policy no longer allows, without reconnecting', async () => {
    const { registry } = gw.gateway.dataDir;
    await registry.putPolicy('live', { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] }] }, audit);
    const client = await gw.connect('live-1', await gw.createDevice('live-1', { policy: 'live' }));
    await client.subscribeAsync('devices/live-1/alerts/#');
    const before = nextMessage(client, 'devices/live-1/alerts/fire');
    await client.publishAsync('devices/live-1/alerts/fire', 'one', { qos: 1 });
    expect(await before).toBe('one');

    await registry.putPolicy(
      'live',
      {
        statements: [
          { effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] },
          { effect: 'deny', actions: ['receive'], topics: ['devices/${device.id}/alerts/#'] },
        ],
      },
      audit,
    );
    await gw.gateway.events.publish({ type: 'policy.changed', policy: 'live' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = nextMessage(client, 'devices/live-1/alerts/fire', 500);
    await client.publishAsync('devices/live-1/alerts/fire', 'two', { qos: 1 });
    expect(await after).toBeUndefined();
    expect(client.connected).toBe(true);
    await client.endAsync();
  });

  it('removes a subscription the new policy no longer allows to subscribe, with an audit entry', async () => {
    const { registry } = gw.gateway.dataDir;
    const open = { statements: [{ effect: 'allow' as const, actions: ['publish' as const, 'subscribe' as const, 'receive' as const], topics: ['devices/${device.id}/#'] }] };
    await registry.putPolicy('shrinking', open, audit);
    const client = await gw.connect('live-3', await gw.createDevice('live-3', { policy: 'shrinking' }));
    await client.subscribeAsync('devices/live-3/cmd/#');

    await registry.putPolicy('shrinking', { statements: [...open.statements, { effect: 'deny', actions: ['subscribe'], topics: ['devices/${device.id}/cmd/#'] }] }, audit);
    await gw.gateway.events.publish({ type: 'policy.changed', policy: 'shrinking' });
    await gw.waitForAudit({ deviceId: 'live-3', action: 'mqtt.subscribe' }, (e) => e.code === 'ACL_SUBSCRIBE_DENIED' && e.detail?.reason === 'policy changed');

    // Allowed again: the removed subscription does not come back by itself; the device must subscribe anew.
    await registry.putPolicy('shrinking', open, audit);
    await gw.gateway.events.publish({ type: 'policy.changed', policy: 'shrinking' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const gone = nextMessage(client, 'devices/live-3/cmd/reboot', 500);
    await client.publishAsync('devices/live-3/cmd/reboot', 'x', { qos: 1 });
    expect(await gone).toBeUndefined();
    expect(client.connected).toBe(true);
    await client.endAsync();
  });

  it('closes sessions whose policy was removed from the device template chain (fail closed)', async () => {
    const { registry } = gw.gateway.dataDir;
    await registry.putPolicy('narrow', { statements: [{ effect: 'allow', actions: ['publish'], topics: ['devices/${device.id}/up'] }] }, audit);
    const client = await gw.connect('live-2', await gw.createDevice('live-2', { policy: 'narrow' }));
    await registry.putPolicy('narrow', { statements: [{ effect: 'allow', actions: ['publish'], topics: ['devices/${device.id}/other'] }] }, audit);
    await gw.gateway.events.publish({ type: 'policy.changed', policy: 'narrow' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.publish('devices/live-2/up', 'x');
    expect(await closed(client)).toBe(true);
    await gw.waitForAudit({ deviceId: 'live-2', action: 'mqtt.publish' }, (e) => e.code === 'ACL_PUBLISH_DENIED');
  });
});

describe('/metrics', () => {
  it('counts refusals by code, sessions, enrollments and revocation-to-disconnect latency', async () => {
    await expect(gw.connect('nobody', undefined)).rejects.toMatchObject({ code: 5 });
    const client = await gw.connect('metrics-1', await gw.createDevice('metrics-1'));
    const at = Date.now();
    await gw.gateway.dataDir.registry.setDeviceStatus({ id: 'metrics-1', status: 'revoked', reason: 'keyCompromise', audit: { actor: 'test', action: 'device.revoke', result: 'ok' } });
    await gw.gateway.events.publish({ type: 'device.status', deviceId: 'metrics-1', status: 'revoked', at });
    expect(await closed(client)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const response = await gw.api<string>('GET', '/metrics');
    expect(response.status).toBe(200);
    expect(response.body).toMatch(/fleetgate_mqtt_connect_refusals_total\{code="AUTH_NO_CLIENT_CERT"\} [1-9]/);
    expect(response.body).toMatch(/fleetgate_tls_handshakes_total\{outcome="ok"\} [1-9]/);
    expect(response.body).toMatch(/fleetgate_revocation_to_disconnect_seconds_count 1\b/);
    expect(response.body).toMatch(/fleetgate_mqtt_sessions_opened_total\{kind="device"\} [1-9]/);
  });
});
