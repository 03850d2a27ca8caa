import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock, generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../../core/index.ts';
import { foreignDeviceCredential, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * Admission over real mTLS with mqtt.js: what the TLS handshake proves about the peer (no certificate, a
 * foreign CA, an operator's or an expired certificate) and the CONNACK and audit entry that follow, plus
 * one device end to end. The hooks' decisions on verified peers (registry status, client id, wills, topic
 * ACLs, claim scope, kicks) are in test/broker/hooks-over-duplex.test.ts, without sockets.
 */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

async function expectRefused(promise: Promise<unknown>, returnCode: number): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code: returnCode });
}

describe('device sessions', () => {
  it('admits a registered device and lets it publish and subscribe on its own topics', async () => {
    const credential = await gw.createDevice('sensor-1');
    const client = await gw.connect('sensor-1', credential);
    await client.subscribeAsync('devices/sensor-1/commands/#');
    const received = nextMessage(client, 'devices/sensor-1/commands/reboot');
    await client.publishAsync('devices/sensor-1/commands/reboot', 'now', { qos: 1 });
    expect(await received).toBe('now');
    expect(gw.gateway.broker.sessions().map((s) => s.clientId)).toContain('sensor-1');
    await gw.waitForAudit({ deviceId: 'sensor-1', action: 'mqtt.connect', result: 'ok' });
    await client.endAsync();
  });

  it('refuses a connection without a client certificate with CONNACK 5, and audits it', async () => {
    await expectRefused(gw.connect('anonymous-1', undefined), 5);
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_NO_CLIENT_CERT');
  });

  it('refuses a certificate from a foreign CA that copies our names', async () => {
    const foreign = await foreignDeviceCredential('sensor-foreign');
    await expectRefused(gw.connect('sensor-foreign', foreign), 5);
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_CERT_UNTRUSTED');
  });

  it('refuses an operator certificate from the device CA (admin API only) with CONNACK 5', async () => {
    const { pki } = gw.gateway.dataDir;
    const keys = await generateKeyPair();
    const issued = await issueCertificate({ issuer: pki.deviceCa, publicKey: keys.publicKey, profile: { kind: 'operator', name: 'alice', validityDays: 30 }, clock: systemClock });
    const operator = { key: await privateKeyToPem(keys.privateKey), cert: issued.pem + pki.pem.deviceCa };
    await expectRefused(gw.connect('alice', operator), 5);
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_CERT_INVALID' && e.detail?.serial === issued.serial);
  });

  it('refuses an expired certificate', async () => {
    const longAgo = fixedClock(new Date(Date.now() - 400 * 24 * 3600_000));
    const expired = await gw.createDevice('sensor-expired', { clock: longAgo });
    await expectRefused(gw.connect('sensor-expired', expired), 5);
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_CERT_EXPIRED');
  });
});
