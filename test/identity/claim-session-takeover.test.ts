import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ClientCredential, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * A batch claim key read out of one device's firmware is the attacker's credential: with it they connect
 * using another device's id as client id. aedes keys sessions by client id, so an admitted claim session
 * named `dev-a` would take over dev-a's live session and, with clean=1, wipe its persistent one. A claim
 * session must never touch an enrolled identity's session, and is admitted for an enrolled serial only
 * where enrolling it could still succeed.
 */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
  const template = await gw.api('POST', '/v1/templates', { body: { name: 'resettable', allowReenroll: true }, token: true });
  expect(template.status, JSON.stringify(template.body)).toBe(201);
});
afterAll(async () => {
  await gw?.close();
});

type Answer = { topic: string; body: Record<string, string> };

async function enrollOver(client: MqttClient, serial: string, csr: string): Promise<Answer> {
  const base = `$fleetgate/enroll/${serial}`;
  await client.subscribeAsync(`${base}/accepted`, { qos: 1 });
  await client.subscribeAsync(`${base}/rejected`, { qos: 1 });
  const answer = new Promise<Answer>((resolve) =>
    client.on('message', (topic, body) => {
      if (topic.startsWith(base)) resolve({ topic, body: JSON.parse(body.toString()) as Record<string, string> });
    }),
  );
  await client.publishAsync(`${base}/request`, JSON.stringify({ csr }), { qos: 1 });
  return answer;
}

/** A device enrolled through `claim` over MQTT: its credential. */
async function enrolled(claim: ClientCredential, serial: string): Promise<ClientCredential & { csr: string }> {
  const keys = await deviceKeyAndCsr(serial);
  const session = await gw.connect(serial, claim);
  const answer = await enrollOver(session, serial, keys.csr);
  session.end(true);
  expect(answer.topic, JSON.stringify(answer.body)).toMatch(/accepted$/);
  return { key: keys.key, cert: (answer.body.certificate ?? '') + (answer.body.chain ?? ''), csr: keys.csr };
}

describe('a claim session using an enrolled identity as client id', () => {
  it('is refused while that device is connected, which keeps its session', async () => {
    const claim = await gw.issueClaim({ maxUses: 10 });
    const device = await enrolled(claim, 'dev-a');
    const live = await gw.connect('dev-a', device);
    await live.subscribeAsync('devices/dev-a/cmd', { qos: 1 });

    await expect(gw.connect('dev-a', claim)).rejects.toMatchObject({ code: 5 });
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (entry) => entry.code === 'AUTH_CLAIM_INVALID' && entry.detail?.clientId === 'dev-a');

    expect(live.connected).toBe(true);
    const backend = await gw.connect('dev-a-peer', await gw.createDevice('dev-a-peer', { policy: 'backend' }));
    const received = nextMessage(live, 'devices/dev-a/cmd');
    await backend.publishAsync('devices/dev-a/cmd', 'still here', { qos: 1 });
    expect(await received).toBe('still here');
    await Promise.all([live.endAsync(), backend.endAsync()]);
  });

  it('never cleans the persistent session of a re-enrollable device that is offline', async () => {
    const claim = await gw.issueClaim({ template: 'resettable', maxUses: 10 });
    const device = await enrolled(claim, 'dev-r');
    const first = await gw.connect('dev-r', device, { clean: false });
    await first.subscribeAsync('devices/dev-r/cmd', { qos: 1 });
    await first.endAsync();

    // Admitted (a factory reset may re-enroll this device), but in its own namespace: clean=1 wipes nothing of dev-r.
    const claimSession = await gw.connect('dev-r', claim, { clean: true });
    await claimSession.endAsync();

    const backend = await gw.connect('dev-r-peer', await gw.createDevice('dev-r-peer', { policy: 'backend' }));
    await backend.publishAsync('devices/dev-r/cmd', 'queued while offline', { qos: 1 });
    const again = await gw.connect('dev-r', device, { clean: false });
    expect(await nextMessage(again, 'devices/dev-r/cmd')).toBe('queued while offline');
    await Promise.all([again.endAsync(), backend.endAsync()]);
  });

  it('is refused for a service identity, a device of another template, and a revoked device', async () => {
    const claim = await gw.issueClaim({ template: 'resettable', maxUses: 10 });
    const service = await gw.api('POST', '/v1/services', { body: { name: 'svc-t', csr: (await deviceKeyAndCsr('svc-t')).csr }, token: true });
    expect(service.status).toBe(201);
    await gw.createDevice('dev-other'); // template default
    await enrolled(claim, 'dev-gone');
    expect((await gw.api('POST', '/v1/devices/dev-gone/revoke', { body: { reason: 'keyCompromise' }, token: true })).status).toBe(200);
    for (const id of ['svc-t', 'dev-other', 'dev-gone']) {
      await expect(gw.connect(id, claim), id).rejects.toMatchObject({ code: 5 });
    }
  });

  it('is admitted for an idempotent retry with the same claim, and refused with another claim', async () => {
    const claim = await gw.issueClaim({ maxUses: 10 });
    const device = await enrolled(claim, 'dev-i');
    const retry = await gw.connect('dev-i', claim);
    const answer = await enrollOver(retry, 'dev-i', device.csr);
    retry.end(true);
    expect(answer.topic).toMatch(/accepted$/);
    expect(device.cert.startsWith(answer.body.certificate ?? '-')).toBe(true);

    const other = await gw.issueClaim({ maxUses: 10 });
    await expect(gw.connect('dev-i', other)).rejects.toMatchObject({ code: 5 });
  });
});

describe('a device an operator registered with a policy of its own', () => {
  it('is never re-keyed by a claim of its template, over MQTT or HTTPS (it would inherit the wider policy)', async () => {
    await gw.createDevice('gw-01', { template: 'resettable', policy: 'backend' });
    const claim = await gw.issueClaim({ template: 'resettable', maxUses: 10 });
    const before = await gw.gateway.dataDir.registry.listCertificates('gw-01');
    await expect(gw.connect('gw-01', claim)).rejects.toMatchObject({ code: 5 });
    const { csr } = await deviceKeyAndCsr('gw-01');
    const https = await gw.api<{ code: string }>('POST', '/v1/enroll', { body: { csr, serial: 'gw-01' }, credential: claim });
    expect(https).toMatchObject({ status: 409, body: { code: 'ENROLL_IDENTITY_NOT_REENROLLABLE' } });
    expect(await gw.gateway.dataDir.registry.listCertificates('gw-01')).toEqual(before);
  });
});

describe('claims that can enroll nothing more', () => {
  it('are refused at CONNECT when exhausted, revoked or expired', async () => {
    const exhausted = await gw.issueClaim({ maxUses: 1 });
    await enrolled(exhausted, 'dev-x1');
    await expect(gw.connect('dev-x2', exhausted)).rejects.toMatchObject({ code: 5 });

    const revoked = await gw.issueClaim({ maxUses: 5 });
    expect((await gw.api('POST', `/v1/claims/${revoked.claimId}/revoke`, { token: true })).status).toBe(200);
    await expect(gw.connect('dev-x3', revoked)).rejects.toMatchObject({ code: 5 });

    const expired = await gw.createClaim('expired-claim', { expiresAt: new Date(Date.now() - 1000) });
    await expect(gw.connect('dev-x4', expired)).rejects.toMatchObject({ code: 5 });
  });
});
