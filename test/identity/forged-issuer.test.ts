import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaCredential, createRootCa, deviceUri, serviceUri, systemClock } from '../../core/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { forgedLeaf as forgeLeaf } from '../helpers/forged-certificates.ts';
import { type ClientCredential, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * An attacker holding a registered manufacturer CA's key (birth certificates) forges a leaf that copies
 * everything a victim's certificate shows: its serial, CN and fleetgate URI SAN, and sends it followed by
 * the device CA certificate. OpenSSL verifies the chain through the manufacturer CA (which is trusted);
 * who issued the leaf must then be decided by signature against the CAs fleetgate knows, never by the
 * certificates the peer sent, and the registry row must be for this exact certificate (fingerprint).
 */
let gw: TestGateway;
let manufacturer: CaCredential;

const forgedLeaf = (options: { serial: string; commonName: string; uri: string; chain: string }) => forgeLeaf(manufacturer, options);

beforeAll(async () => {
  gw = await startTestGateway();
  manufacturer = await createRootCa({ commonName: 'Acme Devices Birth CA', clock: systemClock });
  const registered = await gw.api('POST', '/v1/claim-issuers', { body: { name: 'acme', template: 'default', certificate: manufacturer.certificate.toString('pem') }, token: true });
  expect(registered.status).toBe(201);
  await new Promise((resolve) => setTimeout(resolve, 100)); // trust reload is asynchronous to the API answer
});
afterAll(async () => {
  await gw?.close();
});

describe('a leaf signed by a manufacturer CA that copies a device certificate', () => {
  it('does not open a session as that device (CONNECT refused, audited)', async () => {
    const victim = await gw.createDevice('dev-b');
    const forged = await forgedLeaf({ serial: victim.serial, commonName: 'dev-b', uri: deviceUri('dev-b'), chain: gw.gateway.dataDir.pki.pem.deviceCa });
    await expect(gw.connect('dev-b', forged)).rejects.toMatchObject({ code: expect.any(Number) });
    // The victim still gets in with its own certificate.
    const genuine = await gw.connect('dev-b', victim);
    await genuine.endAsync();
  });

  it('is not renewed into a genuine device certificate over HTTPS or EST', async () => {
    const victim = await gw.createDevice('dev-c');
    const forged = await forgedLeaf({ serial: victim.serial, commonName: 'dev-c', uri: deviceUri('dev-c'), chain: gw.gateway.dataDir.pki.pem.deviceCa });
    const { csr } = await deviceKeyAndCsr('dev-c');
    const before = await gw.gateway.dataDir.registry.listCertificates('dev-c');
    const renewed = await gw.api('POST', '/v1/renew', { body: { csr }, credential: forged });
    expect(renewed.status, JSON.stringify(renewed.body)).toBeGreaterThanOrEqual(400);
    const est = await gw.api('POST', '/.well-known/est/simplereenroll', { body: csr.replace(/-----[^-]+-----|\n/g, ''), contentType: 'application/pkcs10', credential: forged });
    expect(est.status).toBeGreaterThanOrEqual(400);
    expect(await gw.gateway.dataDir.registry.listCertificates('dev-c')).toEqual(before);
  });

  it('gets the same answer on a resumed TLS session as on a fresh one', async () => {
    // Resumption skips certificate verification; who the peer is must not depend on it.
    const victim = await gw.createDevice('dev-e');
    const forged = await forgedLeaf({ serial: victim.serial, commonName: 'dev-e', uri: deviceUri('dev-e'), chain: gw.gateway.dataDir.pki.pem.deviceCa });
    const agent = new Agent({ keepAlive: false, maxCachedSessions: 4 });
    const renew = (credential: ClientCredential, csr: string) =>
      new Promise<{ status: number; code: string | undefined; reused: boolean }>((resolve, reject) => {
        const body = JSON.stringify({ csr });
        const req = request(
          { host: '127.0.0.1', port: gw.apiPort, path: '/v1/renew', method: 'POST', agent, ca: gw.ca, servername: 'localhost', key: credential.key, cert: credential.cert, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
          (res) => {
            let text = '';
            res.on('data', (chunk: Buffer) => (text += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, code: (JSON.parse(text) as { code?: string }).code, reused: (res.socket as TLSSocket).isSessionReused() }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const { csr } = await deviceKeyAndCsr('dev-e');
    const fresh = await renew(forged, csr);
    const resumed = await renew(forged, csr);
    expect(resumed.reused).toBe(true);
    expect([fresh.status, fresh.code]).toEqual([401, 'AUTH_CERT_UNTRUSTED']);
    expect([resumed.status, resumed.code]).toEqual([401, 'AUTH_CERT_UNTRUSTED']);
    // And the genuine certificate is the device on both.
    const nextCsr = (await deviceKeyAndCsr('dev-e')).csr;
    expect((await renew(victim, nextCsr)).status).toBe(201);
    const again = await renew(victim, nextCsr);
    expect(again).toMatchObject({ status: 201, reused: true });
    agent.destroy();
  });

  it('does not open a session as a service', async () => {
    const service = await gw.api<{ serial: string }>('POST', '/v1/services', { body: { name: 'svc-1', csr: (await deviceKeyAndCsr('svc-1')).csr }, token: true });
    expect(service.status, JSON.stringify(service.body)).toBe(201);
    const forged = await forgedLeaf({ serial: service.body.serial, commonName: 'svc-1', uri: serviceUri('svc-1'), chain: gw.gateway.dataDir.pki.pem.deviceCa });
    await expect(gw.connect('svc-1', forged)).rejects.toMatchObject({ code: expect.any(Number) });
  });

  it('yields at most a claim session for the serial in its CN, never the identity in its SAN', async () => {
    // CN names a fresh serial: the manufacturer CA may enroll it, but the SAN claims a registered device.
    await gw.createDevice('dev-d');
    const forged = await forgedLeaf({ serial: '0badc0de01', commonName: 'ACME-7', uri: deviceUri('dev-d'), chain: gw.gateway.dataDir.pki.pem.deviceCa });
    await expect(gw.connect('dev-d', forged)).rejects.toMatchObject({ code: 2 });
    const claim = await gw.connect('ACME-7', forged);
    // Its scope is enrollment for ACME-7 only.
    await expect(claim.subscribeAsync('devices/dev-d/#')).rejects.toThrow();
    claim.end(true);
  });
});

describe('renewals of one certificate', () => {
  it('leave one usable successor: the first used retires the others (a thief cannot keep a sibling)', async () => {
    const device = await gw.createDevice('dev-twin');
    const renew = async () => {
      const next = await deviceKeyAndCsr('dev-twin');
      const response = await gw.api<{ certificate: string; chain: string }>('POST', '/v1/renew', { body: { csr: next.csr }, credential: device });
      expect(response.status).toBe(201);
      return { key: next.key, cert: response.body.certificate + response.body.chain };
    };
    const owners = await renew();
    const thiefs = await renew();
    const session = await gw.connect('dev-twin', owners);
    await session.endAsync();
    // Superseding follows the first connection asynchronously; its audit entry says it is done.
    await gw.waitForAudit({ action: 'certificate.supersede', deviceId: 'dev-twin' });
    await expect(gw.connect('dev-twin', thiefs)).rejects.toMatchObject({ code: 5 });
    await expect(gw.connect('dev-twin', device)).rejects.toMatchObject({ code: 5 });
    const active = (await gw.gateway.dataDir.registry.listCertificates('dev-twin')).filter((c) => c.status === 'active');
    expect(active).toHaveLength(1);
  });
});
