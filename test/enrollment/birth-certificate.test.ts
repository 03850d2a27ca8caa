import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaCredential, createRootCa, generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../../core/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/** A manufacturer CA registered as a claim issuer: factory-burned birth certificates enroll their own CN. */
let gw: TestGateway;
let manufacturer: CaCredential;

async function birthCertificate(serial: string): Promise<{ key: string; cert: string }> {
  const keys = await generateKeyPair();
  // Any clientAuth certificate with CN = serial will do; the device profile is a convenient one.
  const issued = await issueCertificate({ issuer: manufacturer, publicKey: keys.publicKey, profile: { kind: 'device', deviceId: serial, validityDays: 3650 }, clock: systemClock });
  return { key: await privateKeyToPem(keys.privateKey), cert: issued.pem };
}

beforeAll(async () => {
  gw = await startTestGateway();
  manufacturer = await createRootCa({ commonName: 'Acme Devices Birth CA', clock: systemClock });
});
afterAll(async () => {
  await gw?.close();
});

describe('birth certificates', () => {
  it('are refused until their manufacturer CA is registered, then enroll exactly their CN', async () => {
    const birth = await birthCertificate('ACME-0001');
    await expect(gw.connect('ACME-0001', birth)).rejects.toMatchObject({ code: 5 });

    const registered = await gw.api('POST', '/v1/claim-issuers', { body: { name: 'acme', template: 'default', certificate: manufacturer.certificate.toString('pem') }, token: true });
    expect(registered, JSON.stringify(registered.body)).toMatchObject({ status: 201, body: { claimId: 'mfr-acme', kind: 'manufacturer-ca' } });
    await new Promise((resolve) => setTimeout(resolve, 100)); // trust reload is asynchronous to the API answer

    await expect(gw.connect('ACME-0002', birth)).rejects.toMatchObject({ code: 2 });
    const session = await gw.connect('ACME-0001', birth);
    await session.subscribeAsync(['$fleetgate/enroll/ACME-0001/accepted', '$fleetgate/enroll/ACME-0001/rejected']);
    const device = await deviceKeyAndCsr('ACME-0001');
    const reply = new Promise<{ topic: string; body: { certificate: string; chain: string } }>((resolve) =>
      session.on('message', (topic, payload) => resolve({ topic, body: JSON.parse(payload.toString()) as { certificate: string; chain: string } })),
    );
    await session.publishAsync('$fleetgate/enroll/ACME-0001/request', JSON.stringify({ csr: device.csr }), { qos: 1 });
    const answer = await reply;
    expect(answer.topic).toBe('$fleetgate/enroll/ACME-0001/accepted');
    session.end(true);
    const identity = await gw.connect('ACME-0001', { key: device.key, cert: answer.body.certificate + answer.body.chain });
    await identity.endAsync();
  });

  it('refuses an HTTPS enrollment of another serial than the CN', async () => {
    const birth = await birthCertificate('ACME-0003');
    const { csr } = await deviceKeyAndCsr('ACME-0003');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr, serial: 'ACME-9999' }, credential: birth })).toMatchObject({ status: 403, body: { code: 'ENROLL_SERIAL_MISMATCH' } });
    expect((await gw.api('POST', '/v1/enroll', { body: { csr }, credential: birth })).status).toBe(201);
  });

  it('stop working when the manufacturer claim is revoked', async () => {
    const birth = await birthCertificate('ACME-0004');
    expect((await gw.api('POST', '/v1/claims/mfr-acme/revoke', { token: true })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await expect(gw.connect('ACME-0004', birth)).rejects.toMatchObject({ code: 5 });
    const { csr } = await deviceKeyAndCsr('ACME-0004');
    expect((await gw.api('POST', '/v1/enroll', { body: { csr }, credential: birth })).status).toBeGreaterThanOrEqual(400);
  });

  it('refuses a bundle that is not a CA certificate', async () => {
    const leaf = await birthCertificate('ACME-0005');
    expect(await gw.api('POST', '/v1/claim-issuers', { body: { name: 'leaf', template: 'default', certificate: leaf.cert }, token: true })).toMatchObject({ status: 400, body: { code: 'CLAIM_ISSUER_INVALID' } });
  });
});
