import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaCredential, createRootCa, generateKeyPair, issueCertificate, systemClock } from '../../core/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';

/**
 * POST /v1/relay/certificate-requests speaks for devices: it is how a `fleetgate broker` without the CA
 * answers MQTT enrollment and renewal. A station token once renewed svc-1 onto an attacker's key through it,
 * because the route accepted stations and trusted `certificateSerial`/`deviceId` from the body. Only a
 * broker credential reaches it now, and the identity comes from the forwarded certificate, which
 * provisioning classifies and checks against the registry itself.
 */
let server: ApiUnderTest;
let manufacturer: CaCredential;
const tokens: Record<string, string> = {};

const der = (pem: string) => new X509Certificate(pem).raw.toString('base64');
const payload = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64');

beforeAll(async () => {
  server = await startApiUnderTest();
  for (const role of ['station', 'viewer', 'operator', 'broker'] as const) {
    const created = await server.api<{ token: string }>('POST', '/v1/tokens', { body: { name: `relay-${role}`, role }, token: true });
    expect(created.status).toBe(201);
    tokens[role] = created.body.token;
  }
  manufacturer = await createRootCa({ commonName: 'Relay Test Birth CA', clock: systemClock });
  expect((await server.api('POST', '/v1/claim-issuers', { body: { name: 'relay-mfr', template: 'default', certificate: manufacturer.certificate.toString('pem') }, token: true })).status).toBe(201);
  await new Promise((resolve) => setTimeout(resolve, 100)); // trust reload is asynchronous to the API answer
});
afterAll(async () => {
  await server?.close();
});

describe('the relay', () => {
  it('refuses every role but broker, before reading the body', async () => {
    const service = await server.api<{ certificate: string }>('POST', '/v1/services', { body: { name: 'svc-relay', csr: (await deviceKeyAndCsr('svc-relay')).csr }, token: true });
    const before = await server.dataDir.registry.listCertificates('svc-relay');
    const { csr } = await deviceKeyAndCsr('svc-relay');
    const body = { kind: 'renew', certificate: der(service.body.certificate), payload: payload({ csr }) };
    for (const token of [true, tokens.station, tokens.viewer, tokens.operator] as const) {
      const response = await server.api<{ code: string }>('POST', '/v1/relay/certificate-requests', { body, token });
      expect(response).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    }
    expect((await server.api('POST', '/v1/relay/certificate-requests', { body })).status).toBe(401);
    expect(await server.dataDir.registry.listCertificates('svc-relay')).toEqual(before);
  });

  it('no longer takes the identity from the body', async () => {
    const response = await server.api<{ code: string }>('POST', '/v1/relay/certificate-requests', {
      body: { kind: 'renew', certificateSerial: 'ab', deviceId: 'svc-relay', payload: payload({ csr: 'x' }) },
      token: tokens.broker,
    });
    expect(response).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
  });

  it('classifies the forwarded certificate itself: a manufacturer leaf copying a service is no service', async () => {
    const keys = await generateKeyPair();
    // Signed by a registered manufacturer CA, with exactly the names a service certificate carries.
    const issued = await issueCertificate({ issuer: manufacturer, publicKey: keys.publicKey, profile: { kind: 'service', name: 'svc-relay', validityDays: 30 }, clock: systemClock });
    expect(issued.pem).toContain('BEGIN CERTIFICATE');
    const before = await server.dataDir.registry.listCertificates('svc-relay');
    const { csr } = await deviceKeyAndCsr('svc-relay');
    const renew = await server.api<{ code: string }>('POST', '/v1/relay/certificate-requests', { body: { kind: 'renew', certificate: der(issued.pem), payload: payload({ csr }) }, token: tokens.broker });
    expect(renew.status).toBe(401);
    expect(renew.body.code).toBe('AUTH_CERT_UNTRUSTED');
    expect(await server.dataDir.registry.listCertificates('svc-relay')).toEqual(before);
  });

  it('enforces the serial a birth certificate is bound to, and refuses what is not a certificate', async () => {
    const keys = await generateKeyPair();
    const birth = await issueCertificate({ issuer: manufacturer, publicKey: keys.publicKey, profile: { kind: 'device', deviceId: 'BIRTH-1', validityDays: 30 }, clock: systemClock });
    const { csr } = await deviceKeyAndCsr('BIRTH-2');
    const enroll = await server.api<{ code: string }>('POST', '/v1/relay/certificate-requests', { body: { kind: 'enroll', certificate: der(birth.pem), serial: 'BIRTH-2', payload: payload({ csr }) }, token: tokens.broker });
    expect(enroll).toMatchObject({ status: 403, body: { code: 'ENROLL_SERIAL_MISMATCH' } });
    expect(await server.dataDir.registry.getDevice('BIRTH-2')).toBeUndefined();

    const garbage = await server.api<{ code: string }>('POST', '/v1/relay/certificate-requests', { body: { kind: 'enroll', certificate: 'AAAA', serial: 'BIRTH-2', payload: payload({ csr }) }, token: tokens.broker });
    expect(garbage).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_INVALID' } });
  });

  it('renews the device the forwarded certificate names, for a broker', async () => {
    const device = await server.createDevice('dev-relayed');
    const next = await deviceKeyAndCsr('dev-relayed');
    const renewed = await server.api<{ deviceId: string; certificate: string }>('POST', '/v1/relay/certificate-requests', {
      body: { kind: 'renew', certificate: der(device.cert), payload: payload({ csr: next.csr }) },
      token: tokens.broker,
    });
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(200);
    expect(renewed.body.deviceId).toBe('dev-relayed');
  });
});
