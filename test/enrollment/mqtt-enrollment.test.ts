import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { x509 } from '../../core/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { closed, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/** Claim-certificate bootstrap over MQTT with mqtt.js: the whole life of a device, and every refusal. */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

type Answer = { topic: string; body: Record<string, string> };

/** Subscribes to both reply topics, then publishes the request, as the README ("Enrollment and renewal") tells devices to. */
async function request(client: MqttClient, base: string, payload: string | Buffer): Promise<Answer> {
  await client.subscribeAsync([`${base}/accepted`, `${base}/rejected`], { qos: 1 });
  const answer = new Promise<Answer>((resolve) => {
    client.on('message', (topic, body) => {
      if (topic === `${base}/accepted` || topic === `${base}/rejected`) resolve({ topic, body: JSON.parse(body.toString()) as Record<string, string> });
    });
  });
  await client.publishAsync(`${base}/request`, payload, { qos: 1 });
  return answer;
}

async function enroll(claim: { key: string; cert: string }, serial: string, payload: string | Buffer): Promise<Answer> {
  const client = await gw.connect(serial, claim);
  try {
    return await request(client, `$fleetgate/enroll/${serial}`, payload);
  } finally {
    client.end(true);
  }
}

describe('enrollment over MQTT', () => {
  it('turns a claim certificate into a device identity that then opens its own session', async () => {
    const claim = await gw.issueClaim({ maxUses: 10 });
    const device = await deviceKeyAndCsr('ignored-cn');
    const answer = await enroll(claim, 'sn-1001', JSON.stringify({ csr: device.csr, attributes: { site: 'plant-7' } }));
    expect(answer.topic).toBe('$fleetgate/enroll/sn-1001/accepted');
    expect(answer.body).toMatchObject({ deviceId: 'sn-1001', notAfter: expect.any(String), serverTime: expect.any(String) });
    const certificate = new x509.X509Certificate(answer.body.certificate ?? '');
    expect(certificate.subject).toBe('CN=sn-1001');
    expect(answer.body.chain).toContain('BEGIN CERTIFICATE');

    const session = await gw.connect('sn-1001', { key: device.key, cert: answer.body.certificate + (answer.body.chain ?? '') });
    await session.subscribeAsync('devices/sn-1001/#');
    const received = nextMessage(session, 'devices/sn-1001/telemetry');
    await session.publishAsync('devices/sn-1001/telemetry', 'first light');
    expect(await received).toBe('first light');
    await session.endAsync();
    // What the device reports is kept apart from the attributes its policy reads (test/enrollment/attribute-trust.test.ts).
    expect(await gw.gateway.dataDir.registry.getDevice('sn-1001')).toMatchObject({ status: 'active', attributes: {}, reportedAttributes: { site: 'plant-7' } });
    expect((await gw.gateway.dataDir.registry.getClaim(claim.claimId))?.uses).toBe(1);
  });

  it('answers a repeated request for the same key with the same certificate, without using the claim again', async () => {
    const claim = await gw.issueClaim({ maxUses: 1 });
    const device = await deviceKeyAndCsr('sn-1002');
    const first = await enroll(claim, 'sn-1002', JSON.stringify({ csr: device.csr }));
    const again = await enroll(claim, 'sn-1002', JSON.stringify({ csr: device.csr }));
    expect(again.topic).toBe('$fleetgate/enroll/sn-1002/accepted');
    expect(again.body.serial).toBe(first.body.serial);
  });

  it('refuses a different key for an enrolled serial as a possible clone', async () => {
    const claim = await gw.issueClaim({ maxUses: 10 });
    await enroll(claim, 'sn-1003', JSON.stringify({ csr: (await deviceKeyAndCsr('x')).csr }));
    const clone = await enroll(claim, 'sn-1003', JSON.stringify({ csr: (await deviceKeyAndCsr('x')).csr }));
    expect(clone).toMatchObject({ topic: '$fleetgate/enroll/sn-1003/rejected', body: { code: 'ENROLL_CLONE_SUSPECTED' } });
    await gw.waitForAudit({ deviceId: 'sn-1003', action: 'device.enroll', result: 'refused' }, (e) => e.code === 'ENROLL_CLONE_SUSPECTED');
  });

  it('answers a request whose sender left at once, on its persistent session (the mosquitto_pub pattern)', async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const serial = 'sn-1010';
    const first = await gw.connect(serial, claim, { clean: false });
    await first.subscribeAsync([`$fleetgate/enroll/${serial}/accepted`, `$fleetgate/enroll/${serial}/rejected`], { qos: 1 });
    const { csr } = await deviceKeyAndCsr(serial);
    // Publish and half-close at once: the request is read, the socket closes before it is answered.
    first.publish(`$fleetgate/enroll/${serial}/request`, JSON.stringify({ csr }), { qos: 0 });
    first.stream.end();
    await new Promise<void>((resolve) => first.once('close', () => resolve()));
    first.end(true);
    const again = await gw.connect(serial, claim, { clean: false });
    const reply = await nextMessage(again, `$fleetgate/enroll/${serial}/accepted`, 5000);
    again.end(true);
    expect(JSON.parse(reply ?? '{}')).toMatchObject({ deviceId: serial });
  });

  it('never keeps a request retained: a claim key cannot park payloads under made-up serials', async () => {
    const claim = await gw.issueClaim({ maxUses: 1 });
    for (const serial of ['sn-park-1', 'sn-park-2']) {
      const client = await gw.connect(serial, claim);
      await client.publishAsync(`$fleetgate/enroll/${serial}/request`, Buffer.alloc(100_000, 0x41), { qos: 1, retain: true });
      client.end(true);
    }
    const persistence = (gw.gateway.broker.aedes as unknown as { persistence: { createRetainedStream(pattern: string): AsyncIterable<{ topic: string }> } }).persistence;
    const retained: string[] = [];
    for await (const packet of persistence.createRetainedStream('$fleetgate/#')) retained.push(packet.topic);
    // Only the gateway's own retained message (the trust bundle, README "Rotating certificates and CAs").
    expect(retained).toEqual(['$fleetgate/trust/bundle']);
  });

  it('stops at max-uses', async () => {
    const claim = await gw.issueClaim({ maxUses: 1 });
    expect((await enroll(claim, 'sn-1004', JSON.stringify({ csr: (await deviceKeyAndCsr('x')).csr }))).topic).toMatch(/accepted$/);
    // An exhausted claim is refused at CONNECT already (CONNACK 5, audited): it can enroll nothing more.
    await expect(gw.connect('sn-1005', claim)).rejects.toMatchObject({ code: 5 });
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (entry) => entry.code === 'AUTH_CLAIM_INVALID' && entry.detail?.clientId === 'sn-1005');
    expect(await gw.gateway.dataDir.registry.getDevice('sn-1005')).toBeUndefined();
  });

  it.each([
    ['not JSON', 'csr please', 'ENROLL_REQUEST_INVALID'],
    ['unknown field', JSON.stringify({ csr: 'x', admin: true }), 'ENROLL_REQUEST_INVALID'],
    ['malformed PEM', JSON.stringify({ csr: '-----BEGIN CERTIFICATE REQUEST-----\n@@@\n-----END CERTIFICATE REQUEST-----\n' }), 'PKI_CSR_MALFORMED'],
    ['oversized CSR', JSON.stringify({ csr: 'A'.repeat(20_000) }), 'PKI_CSR_MALFORMED'],
  ])('rejects %s with a coded reply and no device', async (_name, payload, code) => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const serial = `sn-bad-${code.length}-${Math.random().toString(36).slice(2, 7)}`;
    const answer = await enroll(claim, serial, payload);
    expect(answer).toMatchObject({ topic: `$fleetgate/enroll/${serial}/rejected`, body: { code } });
    expect(await gw.gateway.dataDir.registry.getDevice(serial)).toBeUndefined();
    expect((await gw.gateway.dataDir.registry.getClaim(claim.claimId))?.uses).toBe(0);
  });

  it("disconnects a claim session that publishes to another serial's enrollment topic", async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const client = await gw.connect('sn-2001', claim);
    client.publish('$fleetgate/enroll/sn-2002/request', JSON.stringify({ csr: (await deviceKeyAndCsr('sn-2002')).csr }));
    expect(await closed(client)).toBe(true);
    await gw.waitForAudit({ actor: 'claim:sn-2001', action: 'mqtt.publish' }, (e) => e.code === 'ACL_CLAIM_SCOPE');
    expect(await gw.gateway.dataDir.registry.getDevice('sn-2002')).toBeUndefined();
  });
});

describe('renewal over MQTT', () => {
  it('issues a new certificate, keeps the old one valid until the new one connects, then supersedes it', async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const device = await deviceKeyAndCsr('sn-3001');
    const enrolled = await enroll(claim, 'sn-3001', JSON.stringify({ csr: device.csr }));
    const oldCredential = { key: device.key, cert: enrolled.body.certificate + (enrolled.body.chain ?? '') };

    const session = await gw.connect('sn-3001', oldCredential);
    const next = await deviceKeyAndCsr('sn-3001');
    const renewed = await request(session, '$fleetgate/certs/sn-3001/renew', JSON.stringify({ csr: next.csr }));
    expect(renewed.topic).toBe('$fleetgate/certs/sn-3001/renew/accepted');
    expect(renewed.body.serial).not.toBe(enrolled.body.serial);
    await session.endAsync();

    // The reply might have been lost: the old certificate still works until the new one is used.
    (await gw.connect('sn-3001', oldCredential)).end(true);
    const fresh = await gw.connect('sn-3001', { key: next.key, cert: renewed.body.certificate + (renewed.body.chain ?? '') });
    await fresh.endAsync();
    await gw.waitForAudit({ deviceId: 'sn-3001', action: 'certificate.supersede' });
    await expect(gw.connect('sn-3001', oldCredential)).rejects.toMatchObject({ code: 5 });
    await gw.waitForAudit({ deviceId: 'sn-3001', action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_CERT_REVOKED');
  });

  it('refuses renewal for a suspended device', async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const device = await deviceKeyAndCsr('sn-3002');
    const enrolled = await enroll(claim, 'sn-3002', JSON.stringify({ csr: device.csr }));
    const session = await gw.connect('sn-3002', { key: device.key, cert: enrolled.body.certificate + (enrolled.body.chain ?? '') });
    // Suspend in the registry only (no bus event), so the session stays open long enough to ask.
    await gw.gateway.dataDir.registry.setDeviceStatus({ id: 'sn-3002', status: 'suspended', reason: 'test', audit: { actor: 'test', action: 'device.suspend', result: 'ok' } });
    const answer = await request(session, '$fleetgate/certs/sn-3002/renew', JSON.stringify({ csr: (await deviceKeyAndCsr('sn-3002')).csr }));
    expect(answer.body.code).toBe('AUTH_DEVICE_SUSPENDED');
    session.end(true);
  });
});
