import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerTokenCommands } from '../../cli/token-commands.ts';
import { x509 } from '../../core/index.ts';
import type { OperatorRole } from '../../registry/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import type { ClientCredential } from '../helpers/registry-fixtures.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * Operator certificates (README "HTTPS API"): a TLS client certificate from the device CA with an
 * urn:fleetgate:operator:<name> SAN stands for the operator token record of that name, on the admin API
 * only. Revoking the token record revokes the certificate; the broker never admits one
 * (api-and-broker.test.ts). Calls presenting a certificate go over the API's HTTPS listener.
 */
let gw: ApiUnderTest;
const dir = makeTempDir();

beforeAll(async () => {
  gw = await startApiUnderTest();
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

async function createOperatorCertificate(name: string, role: OperatorRole): Promise<ClientCredential> {
  const { key, csr } = await deviceKeyAndCsr(name);
  const response = await gw.api<{ name: string; role: string; certificate: string; chain: string }>('POST', '/v1/operators/certificates', { body: { name, role, csr }, token: true });
  expect(response.status).toBe(201);
  expect(response.body).toMatchObject({ name, role });
  return { key, cert: response.body.certificate + response.body.chain };
}

describe('operator certificates', () => {
  it('issues a device-CA certificate with the operator URI and lists it as a token', async () => {
    const { key: _key, csr } = await deviceKeyAndCsr('carol');
    const response = await gw.api<{ certificate: string; chain: string }>('POST', '/v1/operators/certificates', { body: { name: 'carol', role: 'viewer', csr }, token: true });
    expect(response.status).toBe(201);
    const certificate = new x509.X509Certificate(response.body.certificate);
    expect(certificate.subject).toBe('CN=carol');
    expect(certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([{ type: 'url', value: 'urn:fleetgate:operator:carol' }]);
    expect(certificate.issuer).toBe(new x509.X509Certificate(gw.dataDir.pki.pem.deviceCa).subject);
    expect(response.body.chain).toBe(gw.dataDir.pki.pem.deviceCa + gw.dataDir.pki.pem.root);

    const listed = await gw.api<{ items: { name: string; role: string }[] }>('GET', '/v1/tokens', { token: true });
    expect(listed.body.items).toContainEqual(expect.objectContaining({ name: 'carol', role: 'viewer', revokedAt: null }));
    await gw.waitForAudit({ action: 'token.create', result: 'ok' }, (e) => e.detail?.name === 'carol' && e.detail.kind === 'certificate');

    // Names are shared with tokens and unique.
    const again = await gw.api('POST', '/v1/operators/certificates', { body: { name: 'carol', role: 'admin', csr }, token: true });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'OPERATOR_TOKEN_EXISTS' });
  });

  it('is for admins only and refuses unknown fields', async () => {
    const { csr } = await deviceKeyAndCsr('dave');
    const viewer = await createOperatorCertificate('viewer-for-admin-check', 'viewer');
    const refused = await gw.api('POST', '/v1/operators/certificates', { body: { name: 'dave', role: 'admin', csr }, credential: viewer });
    expect(refused.status).toBe(403);
    const unknownField = await gw.api('POST', '/v1/operators/certificates', { body: { name: 'dave', role: 'admin', csr, extra: 1 }, token: true });
    expect(unknownField.status).toBe(400);
    const badCsr = await gw.api('POST', '/v1/operators/certificates', { body: { name: 'dave', role: 'admin', csr: 'nonsense' }, token: true });
    expect(badCsr.body).toMatchObject({ code: 'PKI_CSR_MALFORMED' });
  });

  it('lets a viewer certificate read but not revoke', async () => {
    const viewer = await createOperatorCertificate('viewer-cert', 'viewer');
    expect((await gw.api('GET', '/v1/devices', { credential: viewer })).status).toBe(200);
    const refused = await gw.api('POST', '/v1/devices/x/revoke', { body: { reason: 'keyCompromise' }, credential: viewer });
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: 'API_FORBIDDEN' });
  });

  it('lets an admin certificate create a template, recorded under its name', async () => {
    const admin = await createOperatorCertificate('admin-cert', 'admin');
    const created = await gw.api('POST', '/v1/templates', { body: { name: 'made-by-cert' }, credential: admin });
    expect(created.status).toBe(201);
    await gw.waitForAudit({ actor: 'operator:admin-cert', result: 'ok' });
  });

  it('stops working once its token record is revoked', async () => {
    const operator = await createOperatorCertificate('revoked-cert', 'operator');
    expect((await gw.api('GET', '/v1/devices', { credential: operator })).status).toBe(200);
    expect((await gw.api('POST', '/v1/tokens/revoked-cert/revoke', { token: true })).status).toBe(200);
    const refused = await gw.api('GET', '/v1/devices', { credential: operator });
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ code: 'API_UNAUTHENTICATED' });
  });

  it('is not an operator certificate without its record: a device certificate gets 401', async () => {
    const device = await gw.createDevice('sensor-at-admin-api');
    const refused = await gw.api('GET', '/v1/devices', { credential: device });
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ code: 'API_UNAUTHENTICATED' });
  });

  it('never accepts the public fingerprint of an operator certificate as a Bearer token', async () => {
    const credential = await createOperatorCertificate('mallory-target', 'admin');
    const fingerprint = new X509Certificate(credential.cert).fingerprint256.replaceAll(':', '').toLowerCase();
    for (const bearer of [`cert:${fingerprint}`, fingerprint, `cert:${fingerprint.toUpperCase()}`]) {
      const response = await gw.api<{ code: string }>('GET', '/v1/whoami', { token: bearer });
      expect(response, bearer).toMatchObject({ status: 401, body: { code: 'API_UNAUTHENTICATED' } });
    }
    // The certificate itself (with its key, over TLS) still works.
    expect(await gw.api('GET', '/v1/whoami', { credential })).toMatchObject({ status: 200, body: { name: 'mallory-target', role: 'admin' } });
  });

  it('lets a Bearer token win over a presented certificate', async () => {
    const admin = await createOperatorCertificate('admin-cert-2', 'admin');
    const refused = await gw.api('GET', '/v1/devices', { credential: admin, token: 'fgt_not-a-real-token' });
    expect(refused.status).toBe(401);
  });
});

describe('fleetgate token create-cert', () => {
  it('writes a key made here (0600), the certificate with its chain and the CA, usable on the API at once', async () => {
    const program = new Command('fleetgate').exitOverride();
    registerTokenCommands(program);
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const out = join(dir.path, 'operator');
    try {
      await program.parseAsync(['token', 'create-cert', '--name', 'cli-viewer', '--role', 'viewer', '--out', out, '--api', `https://127.0.0.1:${await gw.listen()}`, '--data-dir', gw.dataDirPath], { from: 'user' });
    } finally {
      spy.mockRestore();
    }
    expect(statSync(join(out, 'operator.key')).mode & 0o777).toBe(0o600);
    // The CLI's own CA file: the trust bundle, which holds the root (README "Rotating certificates and CAs").
    expect(readFileSync(join(out, 'ca.crt'), 'utf8')).toContain(gw.ca.trim());
    const credential = { key: readFileSync(join(out, 'operator.key'), 'utf8'), cert: readFileSync(join(out, 'operator.crt'), 'utf8') };
    expect((await gw.api('GET', '/v1/devices', { credential })).status).toBe(200);
  });
});
