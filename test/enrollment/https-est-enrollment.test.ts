import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { x509 } from '../../core/index.ts';
import { csrForKey, deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import { foreignDeviceCredential } from '../helpers/test-gateway.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { curlClient } from '../helpers/curl.ts';

/**
 * Enrollment over HTTPS (/v1/enroll, /v1/renew) and EST (RFC 7030), driven by curl and openssl as a
 * device maker would, plus the refusals that must leave nothing behind. Client certificates travel only on
 * a socket: the API's own HTTPS listener, with no broker (that an enrolled certificate then connects over
 * MQTT is in test/api/api-and-broker.test.ts).
 */
const run = promisify(execFile);
let gw: ApiUnderTest;
let apiPort: number;
const dir = makeTempDir();

beforeAll(async () => {
  gw = await startApiUnderTest();
  apiPort = await gw.listen();
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

const { files, curl } = curlClient(dir.path, () => gw.ca);

const api = () => `https://localhost:${apiPort}`;

describe('POST /v1/enroll with curl', () => {
  it('refuses without a client certificate, with a device certificate, and with a foreign claim issuer', async () => {
    const { csr } = await deviceKeyAndCsr('sn-h2');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr } })).toMatchObject({ status: 401, body: { code: 'API_CLIENT_CERT_REQUIRED' } });
    const device = await gw.createDevice('h-device');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr }, credential: device })).toMatchObject({ body: { code: 'ENROLL_CLAIM_UNKNOWN' } });
    const foreign = await foreignDeviceCredential('sn-h2');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr }, credential: foreign })).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_UNTRUSTED' } });
    await gw.waitForAudit({ result: 'refused' }, (e) => e.code === 'AUTH_CERT_UNTRUSTED' && e.action.includes('/v1/enroll'));
  });

  it.each([
    ['RSA 1024', { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }, 'PKI_KEY_TYPE_NOT_ALLOWED'],
    ['P-521', { name: 'ECDSA', namedCurve: 'P-521' }, { name: 'ECDSA', hash: 'SHA-256' }, 'PKI_KEY_TYPE_NOT_ALLOWED'],
  ] as const)('refuses a %s key', async (_name, algorithm, signing, code) => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const csr = await csrForKey('sn-weak', algorithm as RsaHashedKeyGenParams | EcKeyGenParams, signing);
    expect(await gw.api('POST', '/v1/enroll', { body: { csr }, credential: claim })).toMatchObject({ status: 400, body: { code } });
    expect(await gw.dataDir.registry.getDevice('sn-weak')).toBeUndefined();
  });

  it('refuses a CSR with a bad signature, and one asking for CA:TRUE', async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const { csr } = await deviceKeyAndCsr('sn-sig');
    const der = new x509.Pkcs10CertificateRequest(csr).rawData.slice(0);
    const bytes = new Uint8Array(der);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0xff; // inside the signature value
    const tampered = new x509.Pkcs10CertificateRequest(bytes).toString('pem');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr: tampered }, credential: claim })).toMatchObject({ status: 400, body: { code: 'PKI_CSR_SIGNATURE_INVALID' } });
    const ca = await deviceKeyAndCsr('sn-ca', [new x509.BasicConstraintsExtension(true, 0, true)]);
    expect(await gw.api('POST', '/v1/enroll', { body: { csr: ca.csr }, credential: claim })).toMatchObject({ status: 400, body: { code: 'PKI_CSR_EXTENSION_REFUSED' } });
    await gw.waitForAudit({ action: 'device.enroll', result: 'refused' }, (e) => e.code === 'PKI_CSR_EXTENSION_REFUSED');
  });

  it('refuses an unknown field in the body', async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const { csr } = await deviceKeyAndCsr('sn-extra');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr, role: 'admin' }, credential: claim })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
  });

  it('enforces the serial allow-list of a template', async () => {
    expect((await gw.api('POST', '/v1/templates', { body: { name: 'locked', requireAllowlist: true }, token: true })).status).toBe(201);
    const claim = await gw.issueClaim({ template: 'locked', maxUses: 5 });
    const { csr } = await deviceKeyAndCsr('sn-list-1');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr }, credential: claim })).toMatchObject({ status: 403, body: { code: 'ENROLL_SERIAL_NOT_ALLOWED' } });
    expect(await gw.api('POST', '/v1/templates/locked/allowlist', { body: { serials: ['sn-list-1', 'sn-list-2'] }, token: true })).toMatchObject({ status: 200, body: { added: 2, total: 2 } });
    expect((await gw.api('POST', '/v1/enroll', { body: { csr }, credential: claim })).status).toBe(201);
  });

  it('never exceeds max-uses when enrollments race for the last uses', async () => {
    const claim = await gw.issueClaim({ maxUses: 3 });
    const requests = await Promise.all(Array.from({ length: 12 }, async (_, i) => ({ csr: (await deviceKeyAndCsr(`sn-race-${i}`)).csr })));
    const results = await Promise.all(requests.map((body) => gw.api<{ code?: string }>('POST', '/v1/enroll', { body, credential: claim })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(3);
    expect(results.filter((r) => r.status !== 201).every((r) => r.body.code === 'ENROLL_CLAIM_EXHAUSTED')).toBe(true);
    expect((await gw.dataDir.registry.getClaim(claim.claimId))?.uses).toBe(3);
    expect(await gw.dataDir.registry.listDevices({ prefix: 'sn-race-' })).toHaveLength(3);
  });

  it('refuses an expired claim', async () => {
    // Expired in the registry while its certificate is still valid for TLS: the claim's own limit decides.
    const claim = await gw.createClaim('claim-expired-h', { expiresAt: new Date(Date.now() - 1000) });
    const { csr } = await deviceKeyAndCsr('sn-late');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr }, credential: claim })).toMatchObject({ status: 403, body: { code: 'ENROLL_CLAIM_EXPIRED' } });
    expect(await gw.dataDir.registry.getDevice('sn-late')).toBeUndefined();
  });
});

describe('POST /v1/renew', () => {
  it('renews with the current device certificate, same key or new key', async () => {
    const device = await gw.createDevice('renew-h1');
    const sameKeyCsr = await csrFromPem(device.key, 'renew-h1');
    const renewed = await gw.api<{ serial: string; certificate: string }>('POST', '/v1/renew', { body: { csr: sameKeyCsr }, credential: device });
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(201);
    expect(renewed.body.serial).not.toBe(device.serial);
    const other = await gw.createDevice('renew-h2');
    expect(await gw.api('POST', '/v1/renew', { body: { csr: sameKeyCsr }, credential: other })).toMatchObject({ status: 409, body: { code: 'PKI_PUBLIC_KEY_IN_USE' } });
  });
});

describe('EST (RFC 7030) with curl and openssl', () => {
  it('serves cacerts, enrolls with simpleenroll and renews with simplereenroll', async () => {
    const cacerts = await curl([`${api()}/.well-known/est/cacerts`]);
    expect(cacerts.status).toBe(200);
    const caFiles = files('est-cacerts', { b64: cacerts.body });
    const { stdout: chain } = await run('sh', ['-c', `base64 -d ${caFiles.b64} | openssl pkcs7 -inform DER -print_certs`]);
    // The trust bundle: root, device CA, claim CA (README "Rotating certificates and CAs").
    expect(chain.match(/BEGIN CERTIFICATE/g)).toHaveLength(3);

    const claim = await gw.issueClaim({ maxUses: 5 });
    const claimFiles = files('est-claim', { crt: claim.cert, key: claim.key });
    const { stdout: key } = await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout']);
    const keyFiles = files('est-dev', { key });
    const { stdout: csrB64 } = await run('sh', ['-c', `openssl req -new -key ${keyFiles.key} -subj /CN=sn-est-1 -outform DER | base64 -w 0`]);
    const reqFiles = files('est-req', { b64: csrB64 });
    const enrolled = await curl(['--cert', claimFiles.crt ?? '', '--key', claimFiles.key ?? '', '-H', 'content-type: application/pkcs10', '--data-binary', `@${reqFiles.b64}`, `${api()}/.well-known/est/simpleenroll`]);
    expect(enrolled.status, enrolled.body).toBe(200);
    const enrolledFiles = files('est-enrolled', { b64: enrolled.body });
    const { stdout: certPem } = await run('sh', ['-c', `base64 -d ${enrolledFiles.b64} | openssl pkcs7 -inform DER -print_certs`]);
    expect(certPem).toMatch(/subject=CN ?= ?sn-est-1/);

    const certFiles = files('est-cert', { pem: certPem });
    const { stdout: csr2 } = await run('sh', ['-c', `openssl req -new -key ${keyFiles.key} -subj /CN=sn-est-1 -outform DER | base64`]);
    const req2 = files('est-req2', { b64: csr2 }); // folded base64 this time (76-character lines)
    const renewed = await curl(['--cert', certFiles.pem ?? '', '--key', keyFiles.key ?? '', '-H', 'content-type: application/pkcs10', '--data-binary', `@${req2.b64}`, `${api()}/.well-known/est/simplereenroll`]);
    expect(renewed.status, renewed.body).toBe(200);
  });

  it('refuses simpleenroll without a claim certificate, with an audit entry', async () => {
    const result = await curl(['-H', 'content-type: application/pkcs10', '--data-binary', 'MIIB', `${api()}/.well-known/est/simpleenroll`]);
    expect(result.status).toBe(401);
    expect(JSON.parse(result.body)).toMatchObject({ code: 'API_CLIENT_CERT_REQUIRED' });
    await gw.waitForAudit({ result: 'refused' }, (e) => e.code === 'API_CLIENT_CERT_REQUIRED' && e.action.includes('simpleenroll'));
  });
});

async function csrFromPem(keyPem: string, cn: string): Promise<string> {
  const path = files(`k-${cn}`, { key: keyPem }).key ?? '';
  const { stdout } = await run('openssl', ['req', '-new', '-key', path, '-subj', `/CN=${cn}`]);
  return stdout;
}

