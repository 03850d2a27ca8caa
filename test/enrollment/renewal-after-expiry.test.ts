import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIssuingCa, createRootCa, dayMs, fixedClock, generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../../core/index.ts';
import { operatorCertificateHash } from '../../provisioning/index.ts';
import { curlClient } from '../helpers/curl.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { runCli } from '../helpers/fleetgate-process.ts';
import type { ClientCredential } from '../helpers/registry-fixtures.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * Renewal after expiry (README "Renewal after expiry") on a whole gateway: real certificates that expired
 * days ago, presented over real TLS to POST /v1/renew (Node's HTTPS client), EST simplereenroll (curl) and
 * MQTTS (mqtt.js). Attacks and refusals first, then the renewals that must work.
 */
const run = promisify(execFile);
let gw: TestGateway;
const dir = makeTempDir();
const { files, curl } = curlClient(dir.path, () => gw.ca);

const ago = (days: number) => new Date(Date.now() - days * dayMs);
const validityDays = 30;
const graceDays = 30;

interface Reply {
  deviceId: string;
  serial: string;
  certificate: string;
  chain: string;
  notAfter: string;
}

beforeAll(async () => {
  gw = await startTestGateway();
  const revivable = await gw.api<{ renewAfterExpiryDays: number }>('POST', '/v1/templates', { body: { name: 'revivable', validityDays, renewAfterExpiryDays: graceDays }, token: true });
  expect(revivable).toMatchObject({ status: 201, body: { renewAfterExpiryDays: graceDays } });
  const strict = await gw.api<{ renewAfterExpiryDays: number }>('POST', '/v1/templates', { body: { name: 'strict', validityDays }, token: true });
  expect(strict).toMatchObject({ status: 201, body: { renewAfterExpiryDays: 0 } });
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

/** A registered device whose certificate (issued by the gateway's device CA) expired `expiredDaysAgo` days ago. */
function expiredDevice(id: string, options: { expiredDaysAgo?: number; template?: string } = {}) {
  return gw.createDevice(id, { template: options.template ?? 'revivable', clock: fixedClock(ago((options.expiredDaysAgo ?? 10) + validityDays)) });
}

/** POST /v1/renew with `credential` as TLS client certificate and a CSR for a new key (or `key`'s). */
async function renew(id: string, credential: ClientCredential, keyAndCsr?: { key: string; csr: string }) {
  const request = keyAndCsr ?? (await deviceKeyAndCsr(id));
  const response = await gw.api<Reply & { code?: string }>('POST', '/v1/renew', { body: { csr: request.csr }, credential });
  return { ...response, key: request.key, csr: request.csr };
}

/** EST simplereenroll with curl, as a device's shell script does: a fresh key, base64 DER CSR. */
async function estReenroll(id: string, credential: ClientCredential): Promise<{ status: number; body: string; key: string; certificate?: string }> {
  const { stdout: key } = await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout']);
  const paths = files(`est-${id}`, { key, crt: credential.cert, ckey: credential.key });
  const { stdout: csr } = await run('sh', ['-c', `openssl req -new -key ${paths.key} -subj /CN=${id} -outform DER | base64 -w 0`]);
  const request = files(`est-${id}-req`, { b64: csr });
  const answer = await curl(['--cert', paths.crt ?? '', '--key', paths.ckey ?? '', '-H', 'content-type: application/pkcs10', '--data-binary', `@${request.b64}`, `${gw.gateway.apiUrl}/.well-known/est/simplereenroll`]);
  if (answer.status !== 200) return { ...answer, key };
  const answerFiles = files(`est-${id}-answer`, { b64: answer.body });
  const { stdout: certificate } = await run('sh', ['-c', `base64 -d ${answerFiles.b64} | openssl pkcs7 -inform DER -print_certs`]);
  return { ...answer, key, certificate };
}

/** The device talks over MQTT with its new certificate: connected, subscribed and echoed on its own topic. */
async function expectMqttWorks(id: string, credential: ClientCredential): Promise<void> {
  const client = await gw.connect(id, credential);
  await client.subscribeAsync(`devices/${id}/echo`);
  const received = nextMessage(client, `devices/${id}/echo`);
  await client.publishAsync(`devices/${id}/echo`, 'back again', { qos: 1 });
  expect(await received).toBe('back again');
  await client.endAsync();
}

const certificatesOf = async (id: string) => gw.gateway.dataDir.registry.listCertificates(id);

describe('the template setting', () => {
  it('is set and kept through the API, bounded to 0..3650 days, and shown by `template set|list`', async () => {
    for (const renewAfterExpiryDays of [-1, 3651, 1.5, '7']) {
      expect(await gw.api('POST', '/v1/templates', { body: { name: 'revivable', renewAfterExpiryDays }, token: true }), String(renewAfterExpiryDays)).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    }
    // A change that does not name it keeps it.
    expect(await gw.api('POST', '/v1/templates', { body: { name: 'revivable', validityDays }, token: true })).toMatchObject({ status: 201, body: { renewAfterExpiryDays: graceDays } });

    const api = ['--data-dir', gw.dataDirPath, '--api', `https://localhost:${gw.apiPort}`];
    const set = await runCli(['template', 'set', '--name', 'field-units', '--renew-after-expiry-days', '180', ...api]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('renewal after expiry within 180 days');
    const listed = await runCli(['template', 'list', ...api]);
    expect(listed.stdout).toMatch(/RENEW EXPIRED/);
    expect(listed.stdout).toMatch(/field-units .* 180d /);
    const json = await runCli(['template', 'list', '--json', ...api]);
    expect(JSON.parse(json.stdout).items).toContainEqual(expect.objectContaining({ name: 'field-units', renewAfterExpiryDays: 180 }));
    const off = await runCli(['template', 'set', '--name', 'field-units', '--renew-after-expiry-days', '0', '--json', ...api]);
    expect(JSON.parse(off.stdout)).toMatchObject({ renewAfterExpiryDays: 0 });
    await gw.waitForAudit({ action: 'template.put', result: 'ok' }, (e) => e.detail?.template === 'field-units');
  });
});

describe('refused: what an expired certificate must never do', () => {
  it('MQTT refuses an expired certificate even when its template allows renewal after expiry', async () => {
    const device = await expiredDevice('rx-mqtt');
    await expect(gw.connect('rx-mqtt', device)).rejects.toMatchObject({ code: 5 });
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_CERT_EXPIRED' && e.detail?.serial === device.serial);
  });

  it('an expired certificate from a foreign CA with the same names renews nothing, over either route', async () => {
    await expiredDevice('rx-victim');
    const foreignRoot = await createRootCa({ commonName: 'fleetgate root CA', clock: systemClock });
    const foreignCa = await createIssuingCa({ issuer: foreignRoot, commonName: 'fleetgate device CA', clock: systemClock });
    const keys = await generateKeyPair();
    const forged = await issueCertificate({ issuer: foreignCa, publicKey: keys.publicKey, profile: { kind: 'device', deviceId: 'rx-victim', validityDays }, clock: fixedClock(ago(10 + validityDays)) });
    const credential = { key: await privateKeyToPem(keys.privateKey), cert: forged.pem + foreignCa.certificate.toString('pem') + '\n' };

    expect(await renew('rx-victim', credential)).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_UNTRUSTED' } });
    const est = await estReenroll('rx-victim', credential);
    expect(est.status).toBe(401);
    expect(JSON.parse(est.body)).toMatchObject({ code: 'AUTH_CERT_UNTRUSTED' });
    expect(await certificatesOf('rx-victim')).toHaveLength(1);
    await gw.waitForAudit({ result: 'refused' }, (e) => e.code === 'AUTH_CERT_UNTRUSTED' && e.action.includes('/v1/renew'));
  });

  it('refuses a certificate that expired longer ago than the template allows (RENEW_EXPIRED_TOO_LATE), audited', async () => {
    const device = await expiredDevice('rx-late', { expiredDaysAgo: graceDays + 5 });
    expect(await renew('rx-late', device)).toMatchObject({ status: 403, body: { code: 'RENEW_EXPIRED_TOO_LATE' } });
    expect(await estReenroll('rx-late', device)).toMatchObject({ status: 403 });
    const entry = await gw.waitForAudit({ deviceId: 'rx-late', action: 'device.renew', result: 'refused' }, (e) => e.code === 'RENEW_EXPIRED_TOO_LATE' && e.detail?.transport === 'https');
    expect(entry.detail).toMatchObject({ afterExpiry: true, currentSerial: device.serial });
    expect(Number(entry.detail?.expiredForDays)).toBeGreaterThanOrEqual(graceDays + 4.9);
    await gw.waitForAudit({ deviceId: 'rx-late', action: 'device.renew', result: 'refused' }, (e) => e.code === 'RENEW_EXPIRED_TOO_LATE' && e.detail?.transport === 'est');
    expect(await certificatesOf('rx-late')).toHaveLength(1);
  });

  it('refuses when the template does not allow renewal after expiry (RENEW_EXPIRED_NOT_ALLOWED), audited', async () => {
    const device = await expiredDevice('rx-strict', { template: 'strict', expiredDaysAgo: 1 });
    expect(await renew('rx-strict', device)).toMatchObject({ status: 403, body: { code: 'RENEW_EXPIRED_NOT_ALLOWED' } });
    await gw.waitForAudit({ deviceId: 'rx-strict', action: 'device.renew', result: 'refused' }, (e) => e.code === 'RENEW_EXPIRED_NOT_ALLOWED');
    expect(await certificatesOf('rx-strict')).toHaveLength(1);
  });

  it('refuses a revoked device and a suspended one, whose certificates then expired', async () => {
    const revoked = await expiredDevice('rx-revoked');
    expect((await gw.api('POST', '/v1/devices/rx-revoked/revoke', { body: { reason: 'keyCompromise' }, token: true })).status).toBe(200);
    expect(await renew('rx-revoked', revoked)).toMatchObject({ status: 403, body: { code: 'AUTH_DEVICE_REVOKED' } });
    const suspended = await expiredDevice('rx-suspended');
    expect((await gw.api('POST', '/v1/devices/rx-suspended/suspend', { body: {}, token: true })).status).toBe(200);
    expect(await renew('rx-suspended', suspended)).toMatchObject({ status: 403, body: { code: 'AUTH_DEVICE_SUSPENDED' } });
    await gw.waitForAudit({ deviceId: 'rx-revoked', action: 'device.renew', result: 'refused' }, (e) => e.code === 'AUTH_DEVICE_REVOKED');
    expect(await certificatesOf('rx-revoked')).toHaveLength(1);
  });

  it('an old certificate renewed before it expired: superseded once the new one was used, and never renewed twice', async () => {
    // Certificates that expire three seconds from now, renewed the ordinary way while still valid.
    const nearlyExpired = fixedClock(new Date(Date.now() - validityDays * dayMs + 3000));
    const used = await gw.createDevice('rx-used', { template: 'revivable', clock: nearlyExpired });
    const unused = await gw.createDevice('rx-unused', { template: 'revivable', clock: nearlyExpired });
    // A session opened while its certificate was valid, still open after it expired.
    const session = await gw.connect('rx-session', await gw.createDevice('rx-session', { template: 'revivable', clock: nearlyExpired }));
    await session.subscribeAsync('$fleetgate/certs/rx-session/renew/rejected');
    const usedRenewal = await renew('rx-used', used);
    const unusedRenewal = await renew('rx-unused', unused);
    expect([usedRenewal.status, unusedRenewal.status]).toEqual([201, 201]);
    await expectMqttWorks('rx-used', { key: usedRenewal.key, cert: usedRenewal.body.certificate + usedRenewal.body.chain });
    expect((await gw.gateway.dataDir.registry.getCertificate(used.serial))?.status).toBe('superseded');
    await new Promise((resolve) => setTimeout(resolve, 3500));

    // Renewal over MQTT is never renewal after expiry, even in a session admitted before the expiry.
    const rejected = nextMessage(session, '$fleetgate/certs/rx-session/renew/rejected', 5000);
    await session.publishAsync('$fleetgate/certs/rx-session/renew/request', JSON.stringify({ csr: (await deviceKeyAndCsr('rx-session')).csr }), { qos: 1 });
    expect(JSON.parse((await rejected) ?? '{}')).toMatchObject({ code: 'AUTH_CERT_EXPIRED' });
    await session.endAsync();

    // Superseded, then expired: it is refused as any superseded certificate is.
    expect(await renew('rx-used', used)).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_REVOKED' } });
    // Renewed but the renewal never used: the same key gets that renewal again, another key nothing.
    expect(await renew('rx-unused', unused)).toMatchObject({ status: 409, body: { code: 'RENEW_EXPIRED_ALREADY_RENEWED' } });
    const again = await renew('rx-unused', unused, { key: unusedRenewal.key, csr: unusedRenewal.csr });
    expect(again).toMatchObject({ status: 201, body: { serial: unusedRenewal.body.serial } });
    expect(await certificatesOf('rx-unused')).toHaveLength(2);
  });
});

describe('refused: every other route keeps refusing expired certificates', () => {
  it('POST /v1/enroll and EST simpleenroll with an expired claim certificate', async () => {
    const { pki, registry } = gw.gateway.dataDir;
    const keys = await generateKeyPair();
    const issued = await issueCertificate({ issuer: pki.claimCa, publicKey: keys.publicKey, profile: { kind: 'claim', claimId: 'old-batch', notAfter: ago(5) }, clock: fixedClock(ago(30)) });
    // The claim row itself is still open: only the certificate has expired.
    await registry.createClaim({ id: 'old-batch', template: 'revivable', certificateSerial: issued.serial, maxUses: null, expiresAt: new Date(Date.now() + dayMs) }, { actor: 'test', action: 'claim.create', result: 'ok' });
    const claim = { key: await privateKeyToPem(keys.privateKey), cert: issued.pem + pki.pem.claimCa };
    const { csr } = await deviceKeyAndCsr('sn-old-claim');
    expect(await gw.api('POST', '/v1/enroll', { body: { csr }, credential: claim })).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_EXPIRED' } });
    // Nor does a claim certificate count as a device certificate on the renewal routes.
    expect(await renew('sn-old-claim', claim)).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_EXPIRED' } });
    const paths = files('old-claim', { crt: claim.cert, key: claim.key });
    const enrolled = await curl(['--cert', paths.crt ?? '', '--key', paths.key ?? '', '-H', 'content-type: application/pkcs10', '--data-binary', 'MIIB', `${gw.gateway.apiUrl}/.well-known/est/simpleenroll`]);
    expect(enrolled.status).toBe(401);
    expect(JSON.parse(enrolled.body)).toMatchObject({ code: 'AUTH_CERT_EXPIRED' });
    expect(await registry.getDevice('sn-old-claim')).toBeUndefined();
  });

  it('the admin API with an expired operator certificate', async () => {
    const { pki, registry } = gw.gateway.dataDir;
    const keys = await generateKeyPair();
    const issued = await issueCertificate({ issuer: pki.deviceCa, publicKey: keys.publicKey, profile: { kind: 'operator', name: 'old-op', validityDays }, clock: fixedClock(ago(10 + validityDays)) });
    await registry.createOperatorToken({ name: 'old-op', role: 'admin', tokenHash: operatorCertificateHash(issued.fingerprint), audit: { actor: 'test', action: 'token.create', result: 'ok' } });
    const operator = { key: await privateKeyToPem(keys.privateKey), cert: issued.pem + pki.pem.deviceCa };
    expect(await gw.api('GET', '/v1/whoami', { credential: operator })).toMatchObject({ status: 401, body: { code: 'API_UNAUTHENTICATED' } });
    expect(await gw.api('GET', '/v1/devices', { credential: operator })).toMatchObject({ status: 401 });
    expect(await renew('old-op', operator)).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_EXPIRED' } });
  });
});

describe('renewal within the grace', () => {
  it('over POST /v1/renew: a new certificate that connects over MQTT, audited with how long the old one was expired', async () => {
    const device = await expiredDevice('rx-back');
    const renewed = await renew('rx-back', device);
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(201);
    expect(renewed.body).toMatchObject({ deviceId: 'rx-back' });
    expect(renewed.body.serial).not.toBe(device.serial);
    expect(new Date(renewed.body.notAfter).getTime()).toBeGreaterThan(Date.now() + (validityDays - 1) * dayMs);
    const entry = await gw.waitForAudit({ deviceId: 'rx-back', action: 'device.renew', result: 'ok' });
    expect(entry.detail).toMatchObject({ transport: 'https', afterExpiry: true, currentSerial: device.serial, certificateSerial: renewed.body.serial });
    expect(Number(entry.detail?.expiredForDays)).toBeGreaterThan(9.9);
    expect(Number(entry.detail?.expiredForDays)).toBeLessThan(10.1);

    await expectMqttWorks('rx-back', { key: renewed.key, cert: renewed.body.certificate + renewed.body.chain });
    // Now superseded: the expired certificate cannot be used again.
    expect(await renew('rx-back', device)).toMatchObject({ status: 401, body: { code: 'AUTH_CERT_REVOKED' } });
  });

  it('once: racing requests issue one certificate; the same key gets it again, another key is refused', async () => {
    const device = await expiredDevice('rx-once', { expiredDaysAgo: 20 });
    const [first, second] = await Promise.all([renew('rx-once', device), renew('rx-once', device)]);
    const statuses = [first.status, second.status].sort();
    expect(statuses, `codes: ${first.body.code} ${second.body.code}`).toEqual([201, 409]);
    const winner = first.status === 201 ? first : second;
    const loser = first.status === 201 ? second : first;
    expect(loser.body).toMatchObject({ code: 'RENEW_EXPIRED_ALREADY_RENEWED' });
    const refusal = await gw.waitForAudit({ deviceId: 'rx-once', action: 'device.renew', result: 'refused' }, (e) => e.code === 'RENEW_EXPIRED_ALREADY_RENEWED');
    expect(refusal.detail).toMatchObject({ afterExpiry: true, transport: 'https', expiredForDays: expect.any(Number) });

    const repeated = await renew('rx-once', device, { key: winner.key, csr: winner.csr });
    expect(repeated).toMatchObject({ status: 201, body: { serial: winner.body.serial, certificate: winner.body.certificate } });
    await gw.waitForAudit({ deviceId: 'rx-once', action: 'device.renew', result: 'ok' }, (e) => e.detail?.repeated === true);
    expect(await renew('rx-once', device)).toMatchObject({ status: 409, body: { code: 'RENEW_EXPIRED_ALREADY_RENEWED' } });
    expect(await certificatesOf('rx-once')).toHaveLength(2);
    await expectMqttWorks('rx-once', { key: winner.key, cert: winner.body.certificate + winner.body.chain });
  });

  it('over EST simplereenroll with curl: a new certificate that connects over MQTT', async () => {
    const device = await expiredDevice('rx-est', { expiredDaysAgo: 29 });
    const renewed = await estReenroll('rx-est', device);
    expect(renewed.status, renewed.body).toBe(200);
    expect(renewed.certificate).toMatch(/subject=CN ?= ?rx-est/);
    const entry = await gw.waitForAudit({ deviceId: 'rx-est', action: 'device.renew', result: 'ok' });
    expect(entry.detail).toMatchObject({ transport: 'est', afterExpiry: true });
    await expectMqttWorks('rx-est', { key: renewed.key, cert: (renewed.certificate ?? '') + gw.gateway.dataDir.pki.pem.deviceCa });
  });
});
