import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { type ClientCredential, closed, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import type { Device as DeviceJson, AuditEntry as AuditJson } from '../../contract/index.ts';
import { curlClient } from '../helpers/curl.ts';

/**
 * What the API does to the broker, and what the broker makes of what the API issued, over a whole gateway
 * (real TLS on both listeners, real MQTT clients): revocation and suspension cut live sessions at once and
 * keep the device out, the API shows live sessions, certificates it issues (to an operator, or to a device
 * enrolling with curl) connect, and operator certificates never do. The API's own answers are tested
 * without a broker (fleet-routes.test.ts, operator-certificate.test.ts,
 * test/enrollment/https-est-enrollment.test.ts).
 */
const run = promisify(execFile);
let gw: TestGateway;
const dir = makeTempDir();

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

const call = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => gw.api<T>(method, path, { token: true, ...(body === undefined ? {} : { body }) });

async function expectRefused(promise: Promise<unknown>, returnCode: number): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code: returnCode });
}

describe('revoke, suspend, resume', () => {
  it('revoking closes the live session at once, revokes its certificates, and its reconnect gets CONNACK 5', async () => {
    const credential = await gw.createDevice('fleet-rev-1');
    const client = await gw.connect('fleet-rev-1', credential);
    const wasClosed = closed(client);
    const revoked = await call<DeviceJson>('POST', '/v1/devices/fleet-rev-1/revoke', { reason: 'keyCompromise' });
    expect(revoked).toMatchObject({ status: 200, body: { id: 'fleet-rev-1', status: 'revoked', statusReason: 'keyCompromise' } });
    expect(await wasClosed).toBe(true);
    await expectRefused(gw.connect('fleet-rev-1', credential), 5);
    await gw.waitForAudit({ deviceId: 'fleet-rev-1', result: 'refused' }, (e) => e.code === 'AUTH_DEVICE_REVOKED');

    const shown = await call<{ device: DeviceJson; certificates: Record<string, unknown>[]; session: unknown }>('GET', '/v1/devices/fleet-rev-1');
    expect(shown.status).toBe(200);
    expect(shown.body.session).toBeNull();
    expect(shown.body.certificates).toEqual([expect.objectContaining({ serial: credential.serial, status: 'revoked', revocationReason: 'keyCompromise', revokedAt: expect.any(String) })]);
    expect(shown.body.certificates[0]).not.toHaveProperty('pem');
    await gw.waitForAudit({ deviceId: 'fleet-rev-1', action: 'device.revoke', result: 'ok' }, (e) => e.actor === 'operator:admin');
  });

  it('suspending closes the session and refuses reconnects; resuming (with no body at all) lets the device back in', async () => {
    const credential = await gw.createDevice('fleet-sus-1');
    const client = await gw.connect('fleet-sus-1', credential);
    const wasClosed = closed(client);
    expect(await call('POST', '/v1/devices/fleet-sus-1/suspend', { reason: 'battery swap' })).toMatchObject({ status: 200, body: { status: 'suspended', statusReason: 'battery swap' } });
    expect(await wasClosed).toBe(true);
    await expectRefused(gw.connect('fleet-sus-1', credential), 5);

    expect(await call('POST', '/v1/devices/fleet-sus-1/resume')).toMatchObject({ status: 200, body: { status: 'active', statusReason: null } });
    const back = await gw.connect('fleet-sus-1', credential);
    await back.subscribeAsync('devices/fleet-sus-1/#');
    const received = nextMessage(back, 'devices/fleet-sus-1/telemetry');
    await back.publishAsync('devices/fleet-sus-1/telemetry', 'ok', { qos: 1 });
    expect(await received).toBe('ok');
    await back.endAsync();
  });
});

describe('devices, sessions and services', () => {
  it('shows the live session of a connected device and lists it among the sessions', async () => {
    const credential = await gw.createDevice('fleet-live-1', { attributes: { site: 'north' } });
    const client = await gw.connect('fleet-live-1', credential);
    const shown = await call<{ device: DeviceJson & { attributes: Record<string, string> }; effectivePolicy: string; session: Record<string, unknown> }>('GET', '/v1/devices/fleet-live-1');
    expect(shown.body).toMatchObject({
      device: { id: 'fleet-live-1', kind: 'device', status: 'active', attributes: { site: 'north' } },
      effectivePolicy: 'default',
      session: { clientId: 'fleet-live-1', kind: 'device', certificateSerial: credential.serial, remoteAddress: expect.stringContaining('127.0.0.1'), connectedAt: expect.any(String) },
    });
    const sessions = await call<{ items: { clientId: string }[] }>('GET', '/v1/sessions?kind=device');
    expect(sessions.body.items.map((s) => s.clientId)).toContain('fleet-live-1');
    expect(await call('GET', '/v1/devices/fleet-nobody')).toMatchObject({ status: 404, body: { code: 'DEVICE_NOT_FOUND' } });
    await client.endAsync();
  });

  it('a service created from a CSR receives device telemetry and reaches a device, and is revoked like a device', async () => {
    const { key, csr } = await deviceKeyAndCsr('whatever-the-csr-says');
    const created = await call<{ name: string; policy: string; serial: string; certificate: string; chain: string; ca: string; notAfter: string }>('POST', '/v1/services', { name: 'fleet-backend', csr });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ name: 'fleet-backend', policy: 'backend', ca: gw.ca, notAfter: expect.any(String) });
    expect(created.body).not.toHaveProperty('privateKey');

    const service = await gw.connect('fleet-backend', { key, cert: created.body.certificate + created.body.chain });
    const device = await gw.connect('fleet-dev-s1', await gw.createDevice('fleet-dev-s1'));
    await service.subscribeAsync('devices/+/telemetry');
    await device.subscribeAsync('devices/fleet-dev-s1/cmd/#');
    const telemetry = nextMessage(service, 'devices/fleet-dev-s1/telemetry');
    await device.publishAsync('devices/fleet-dev-s1/telemetry', '21.5', { qos: 1 });
    expect(await telemetry).toBe('21.5');
    const command = nextMessage(device, 'devices/fleet-dev-s1/cmd/reboot');
    await service.publishAsync('devices/fleet-dev-s1/cmd/reboot', 'now', { qos: 1 });
    expect(await command).toBe('now');

    const services = await call<{ items: DeviceJson[] }>('GET', '/v1/services');
    expect(services.body.items).toEqual([expect.objectContaining({ id: 'fleet-backend', kind: 'service', policy: 'backend', status: 'active' })]);

    const serviceClosed = closed(service);
    expect(await call('POST', '/v1/devices/fleet-backend/revoke', { reason: 'privilegeWithdrawn' })).toMatchObject({ status: 200, body: { kind: 'service', status: 'revoked' } });
    expect(await serviceClosed).toBe(true);
    await expectRefused(gw.connect('fleet-backend', { key, cert: created.body.certificate + created.body.chain }), 5);
    await device.endAsync();
  });

  it('registers a device from a CSR: the certificate connects, the key never travelled, the audit names the operator', async () => {
    const { key, csr } = await deviceKeyAndCsr('fleet-reg-1');
    const created = await call<{ id: string; template: string; policy: string | null; serial: string; certificate: string; chain: string; ca: string }>('POST', '/v1/devices', {
      id: 'fleet-reg-1',
      csr,
      attributes: { site: 'lab' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ id: 'fleet-reg-1', template: 'default', policy: null, ca: gw.ca });
    expect(created.body).not.toHaveProperty('privateKey');
    const device = await gw.connect('fleet-reg-1', { key, cert: created.body.certificate + created.body.chain });
    await device.endAsync();
    expect(await gw.gateway.dataDir.registry.getDevice('fleet-reg-1')).toMatchObject({ kind: 'device', attributes: { site: 'lab' } });
    const audit = await call<{ items: AuditJson[] }>('GET', '/v1/audit?deviceId=fleet-reg-1&action=device.register');
    expect(audit.body.items[0]).toMatchObject({ actor: 'operator:admin', result: 'ok', detail: expect.objectContaining({ serial: created.body.serial }) });

    expect(await call('POST', '/v1/devices', { id: 'fleet-reg-1', csr })).toMatchObject({ status: 409, body: { code: 'DEVICE_EXISTS' } });
    expect(await call('POST', '/v1/devices', { id: 'fleet-reg-2', csr, template: 'no-such-template' })).toMatchObject({ status: 404, body: { code: 'TEMPLATE_NOT_FOUND' } });
    expect(await call('POST', '/v1/devices', { id: 'fleet-reg-2', csr: 'not a csr' })).toMatchObject({ status: 400, body: { code: 'PKI_CSR_MALFORMED' } });
    expect(await gw.gateway.dataDir.registry.getDevice('fleet-reg-2')).toBeUndefined();
  });
});

describe('operator certificates', () => {
  async function createOperatorCertificate(name: string, role: string): Promise<ClientCredential> {
    const { key, csr } = await deviceKeyAndCsr(name);
    const response = await gw.api<{ name: string; role: string; certificate: string; chain: string }>('POST', '/v1/operators/certificates', { body: { name, role, csr }, token: true });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ name, role });
    return { key, cert: response.body.certificate + response.body.chain };
  }

  it('is refused by the broker with CONNACK 5', async () => {
    const admin = await createOperatorCertificate('mqtt-cert', 'admin');
    await expect(gw.connect('mqtt-cert', admin)).rejects.toMatchObject({ code: 5 });
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (e) => e.code === 'AUTH_CERT_INVALID');
  });
});

describe('POST /v1/enroll with curl', () => {
  const { files, curl } = curlClient(dir.path, () => gw.ca);

  const api = () => `https://localhost:${gw.apiPort}`;

  it('enrolls with the claim certificate as TLS client certificate; the certificate then opens an MQTT session', async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    const claimFiles = files('claim-a', { crt: claim.cert, key: claim.key });
    const { stdout: key } = await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout']);
    const keyFiles = files('dev-h1', { key });
    const { stdout: csr } = await run('openssl', ['req', '-new', '-key', keyFiles.key ?? '', '-subj', '/CN=sn-h1']);
    const result = await curl(['--cert', claimFiles.crt ?? '', '--key', claimFiles.key ?? '', '-H', 'content-type: application/json', '-d', JSON.stringify({ csr }), `${api()}/v1/enroll`]);
    expect(result.status, result.body).toBe(201);
    const reply = JSON.parse(result.body) as { deviceId: string; certificate: string; chain: string };
    expect(reply.deviceId).toBe('sn-h1');
    const client = await gw.connect('sn-h1', { key, cert: reply.certificate + reply.chain });
    await client.publishAsync('devices/sn-h1/telemetry', 'hi');
    await client.endAsync();
  });
});
