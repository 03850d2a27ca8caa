import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateReply } from '../../core/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ClientCredential, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * What a claim of a re-enrollable template may re-key (README "Enrollment and renewal"): an active device of
 * its own template, nothing else. The attacker holds a batch claim key of template t1 (read out of firmware)
 * and names the serial of an identity it wants: a service, a device of another template, a suspended or
 * revoked device. Each attempt is refused with its code and an audit entry, and leaves the registry as it
 * was; the factory-reset path and the lost-reply retry keep working.
 */
let gw: TestGateway;
let claimT1: ClientCredential & { claimId: string };
let claimT2: ClientCredential & { claimId: string };
let service: { key: string; csr: string; serial: string; cert: string };

const registry = () => gw.gateway.dataDir.registry;

/** Everything an enrollment could change about one identity, and the claim's use count. */
async function stateOf(id: string, claimId: string) {
  return { device: await registry().getDevice(id), certificates: await registry().listCertificates(id), uses: (await registry().getClaim(claimId))?.uses };
}

async function enrollHttps(claim: ClientCredential, serial: string, csr: string) {
  return gw.api<CertificateReply & { code?: string }>('POST', '/v1/enroll', { body: { csr, serial }, credential: claim });
}

/** MQTT enrollment as firmware does it: subscribe to both replies, then publish the request. */
async function enrollMqtt(claim: ClientCredential, serial: string, csr: string): Promise<{ topic: string; body: Record<string, string> }> {
  const client: MqttClient = await gw.connect(serial, claim);
  try {
    const base = `$fleetgate/enroll/${serial}`;
    await client.subscribeAsync([`${base}/accepted`, `${base}/rejected`], { qos: 1 });
    const answer = new Promise<{ topic: string; body: Record<string, string> }>((resolve) => {
      client.on('message', (topic, body) => resolve({ topic, body: JSON.parse(body.toString()) as Record<string, string> }));
    });
    await client.publishAsync(`${base}/request`, JSON.stringify({ csr }), { qos: 1 });
    return await answer;
  } finally {
    client.end(true);
  }
}

beforeAll(async () => {
  gw = await startTestGateway();
  for (const name of ['t1', 't2']) {
    expect((await gw.api('POST', '/v1/templates', { body: { name, allowReenroll: true }, token: true })).status).toBe(201);
  }
  claimT1 = await gw.issueClaim({ template: 't1', maxUses: 50 });
  claimT2 = await gw.issueClaim({ template: 't2', maxUses: 50 });
  const keys = await deviceKeyAndCsr('svc-1');
  const created = await gw.api<{ serial: string; certificate: string }>('POST', '/v1/services', { body: { name: 'svc-1', csr: keys.csr }, token: true });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  service = { ...keys, serial: created.body.serial, cert: created.body.certificate };
});
afterAll(async () => {
  await gw?.close();
});

describe('re-enrollment is limited to active devices of the claim template', () => {
  it('refuses to re-key a service, over HTTPS and MQTT, leaving its certificate and policy as they were', async () => {
    const before = await stateOf('svc-1', claimT1.claimId);
    expect(before.device).toMatchObject({ kind: 'service', policy: 'backend' });

    const https = await enrollHttps(claimT1, 'svc-1', (await deviceKeyAndCsr('svc-1')).csr);
    expect(https).toMatchObject({ status: 409, body: { code: 'ENROLL_IDENTITY_NOT_REENROLLABLE' } });
    // Over MQTT the claim session is refused at CONNECT already (README "Enrollment and renewal"), before any request.
    await expect(gw.connect('svc-1', claimT1)).rejects.toMatchObject({ code: 5 });

    expect(await stateOf('svc-1', claimT1.claimId)).toEqual(before);
    await gw.waitForAudit({ deviceId: 'svc-1', action: 'device.enroll', result: 'refused' }, (e) => e.code === 'ENROLL_IDENTITY_NOT_REENROLLABLE' && e.actor.startsWith('claim:'));
  });

  it("refuses a service even to a claim of the service's own template", async () => {
    // Services are registered under the default template: make it re-enrollable, as an operator might.
    expect((await gw.api('POST', '/v1/templates', { body: { name: 'default', allowReenroll: true }, token: true })).status).toBe(201);
    const claimDefault = await gw.issueClaim({ template: 'default', maxUses: 5 });
    const before = await stateOf('svc-1', claimDefault.claimId);
    expect(await enrollHttps(claimDefault, 'svc-1', (await deviceKeyAndCsr('svc-1')).csr)).toMatchObject({ status: 409, body: { code: 'ENROLL_IDENTITY_NOT_REENROLLABLE' } });
    expect(await stateOf('svc-1', claimDefault.claimId)).toEqual(before);
  });

  it("never hands out a service's certificate as an idempotent retry, even for the service's own key", async () => {
    const before = await stateOf('svc-1', claimT1.claimId);
    const answer = await enrollHttps(claimT1, 'svc-1', service.csr);
    expect(answer).toMatchObject({ status: 409, body: { code: 'ENROLL_IDENTITY_NOT_REENROLLABLE' } });
    expect(JSON.stringify(answer.body)).not.toContain(service.cert.trim().split('\n')[1]);
    expect(await stateOf('svc-1', claimT1.claimId)).toEqual(before);
  });

  it('refuses to re-key a device of another template', async () => {
    const first = await deviceKeyAndCsr('dev-t2');
    expect((await enrollHttps(claimT2, 'dev-t2', first.csr)).status).toBe(201);
    const before = await stateOf('dev-t2', claimT1.claimId);

    expect(await enrollHttps(claimT1, 'dev-t2', (await deviceKeyAndCsr('dev-t2')).csr)).toMatchObject({ status: 409, body: { code: 'ENROLL_IDENTITY_NOT_REENROLLABLE' } });
    // Not even the device's own key gets its certificate back through a claim of another template.
    expect(await enrollHttps(claimT1, 'dev-t2', first.csr)).toMatchObject({ status: 409, body: { code: 'ENROLL_IDENTITY_NOT_REENROLLABLE' } });
    expect(await stateOf('dev-t2', claimT1.claimId)).toEqual(before);
    await gw.waitForAudit({ deviceId: 'dev-t2', action: 'device.enroll', result: 'refused' }, (e) => e.code === 'ENROLL_IDENTITY_NOT_REENROLLABLE');
  });

  it('refuses to re-key a suspended or a revoked device of the claim template', async () => {
    for (const [id, action, code] of [
      ['dev-susp', 'suspend', 'AUTH_DEVICE_SUSPENDED'],
      ['dev-rev', 'revoke', 'AUTH_DEVICE_REVOKED'],
    ] as const) {
      const first = await deviceKeyAndCsr(id);
      expect((await enrollHttps(claimT1, id, first.csr)).status).toBe(201);
      const changed = await gw.api('POST', `/v1/devices/${id}/${action}`, { body: action === 'revoke' ? { reason: 'keyCompromise' } : {}, token: true });
      expect(changed.status, JSON.stringify(changed.body)).toBe(200);
      const before = await stateOf(id, claimT1.claimId);

      expect(await enrollHttps(claimT1, id, (await deviceKeyAndCsr(id)).csr)).toMatchObject({ status: 403, body: { code } });
      expect(await enrollHttps(claimT1, id, first.csr)).toMatchObject({ status: 403, body: { code } });
      expect(await stateOf(id, claimT1.claimId)).toEqual(before);
      await gw.waitForAudit({ deviceId: id, action: 'device.enroll', result: 'refused' }, (e) => e.code === code);
    }
  });
});

describe('what re-enrollment is for', () => {
  it('re-keys an active device of the claim template after a factory reset; the old certificate stops working', async () => {
    const first = await deviceKeyAndCsr('dev-reset');
    const enrolled = await enrollHttps(claimT1, 'dev-reset', first.csr);
    expect(enrolled.status).toBe(201);

    const reset = await deviceKeyAndCsr('dev-reset');
    const again = await enrollMqtt(claimT1, 'dev-reset', reset.csr);
    expect(again.topic).toBe('$fleetgate/enroll/dev-reset/accepted');
    expect(again.body.serial).not.toBe(enrolled.body.serial);
    expect(await registry().getCertificate(enrolled.body.serial)).toMatchObject({ status: 'superseded' });
    await gw.waitForAudit({ deviceId: 'dev-reset', action: 'device.enroll', result: 'ok' }, (e) => e.detail?.reenrolled === true);

    const session = await gw.connect('dev-reset', { key: reset.key, cert: `${again.body.certificate}${again.body.chain}` });
    await session.endAsync();
    await expect(gw.connect('dev-reset', { key: first.key, cert: enrolled.body.certificate + enrolled.body.chain })).rejects.toMatchObject({ code: 5 });
  });

  it('answers a lost-reply retry (same serial, same key) with the certificate already issued, without using the claim', async () => {
    const keys = await deviceKeyAndCsr('dev-retry');
    const first = await enrollHttps(claimT1, 'dev-retry', keys.csr);
    expect(first.status).toBe(201);
    const uses = (await registry().getClaim(claimT1.claimId))?.uses;
    const retry = await enrollMqtt(claimT1, 'dev-retry', keys.csr);
    expect(retry).toMatchObject({ topic: '$fleetgate/enroll/dev-retry/accepted', body: { serial: first.body.serial, certificate: first.body.certificate } });
    expect((await registry().getClaim(claimT1.claimId))?.uses).toBe(uses);
  });
});
