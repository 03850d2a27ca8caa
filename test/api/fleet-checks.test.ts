import { createHash, X509Certificate } from 'node:crypto';
import { Command } from 'commander';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRootCa, fixedClock } from '../../core/index.ts';
import type { CheckReport } from '../../contract/index.ts';
import { registerCheckCommand } from '../../cli/check-command.ts';
import { checkedCas } from '../../cli/provisioning-api.ts';
import { closed, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * The fleet health checks on a running gateway: GET /v1/checks, `fleetgate check` and the Prometheus gauges,
 * with real MQTT sessions for the checks that need one (a takeover of a live session, a session the kick
 * never reached). The registry-backed checks fire and clear on both databases in
 * test/registry/fleet-check-facts.test.ts; every rule's edges are in core/fleet-checks.test.ts.
 */
let gw: TestGateway;
let viewer: string;
const clients: MqttClient[] = [];

beforeAll(async () => {
  gw = await startTestGateway();
  const created = await gw.api<{ token: string }>('POST', '/v1/tokens', { body: { name: 'checks-viewer', role: 'viewer' }, token: true });
  expect(created.status).toBe(201);
  viewer = created.body.token;
});
afterAll(async () => {
  for (const client of clients) client.end(true);
  await gw?.close();
});

async function checks(id?: string): Promise<CheckReport> {
  const response = await gw.api<CheckReport>('GET', `/v1/checks?fresh=true${id ? `&id=${id}` : ''}`, { token: viewer });
  expect(response.status).toBe(200);
  return response.body;
}
const registry = () => gw.gateway.dataDir.registry;
const statusOf = async (id: string) => (await checks(id)).items[0]?.status;

/** Runs `fleetgate check <args>` in-process; answers its output and exit status. */
async function cli(args: string[]): Promise<{ out: string; exitCode: number }> {
  const program = new Command('fleetgate').exitOverride();
  registerCheckCommand(program);
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  const before = process.exitCode;
  process.exitCode = 0;
  try {
    await program.parseAsync(['check', ...args, '--api', `https://localhost:${gw.apiPort}`, '--data-dir', gw.dataDirPath], { from: 'user' });
    return { out: chunks.join(''), exitCode: Number(process.exitCode ?? 0) };
  } finally {
    spy.mockRestore();
    process.exitCode = before;
  }
}

async function connect(id: string, credential: { cert: string; key: string }): Promise<MqttClient> {
  const client = await gw.connect(id, credential);
  clients.push(client);
  return client;
}

describe('fleet health checks on a running gateway', () => {
  it('a fresh gateway: viewers may read them; only the audit verification is due, and verifying clears it', async () => {
    const report = await checks();
    expect(report.items.map((i) => i.id)).toHaveLength(10);
    expect(report.items.filter((i) => i.status !== 'pass').map((i) => i.id)).toEqual(['audit-chain-verification']);
    expect(report.status).toBe('warn');
    expect((await gw.api('GET', '/v1/checks')).status).toBe(401);
    expect(await gw.api('GET', '/v1/checks?id=nope', { token: viewer })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });

    // A warning alone: exit status 0, and the table says what to run.
    const warned = await cli([]);
    expect(warned.exitCode).toBe(0);
    expect(warned.out).toMatch(/WARN {2}audit-chain-verification/);
    expect(warned.out).toContain('next: Run `fleetgate audit verify`');

    expect((await gw.api('GET', '/v1/audit/verify', { token: true })).status).toBe(200);
    expect(await statusOf('audit-chain-verification')).toBe('pass');
    expect((await registry().queryAudit({ action: 'audit.verify' }))[0]).toMatchObject({ actor: 'operator:admin', result: 'ok', detail: { ok: true } });
  });

  it('cloned-credential and client-id-takeover: one certificate on two connections fighting over the id', async () => {
    const credential = await gw.createDevice('twin-1');
    // A reconnect after a clean disconnect is no takeover: both checks stay clear.
    (await connect('twin-1', credential)).end(true);
    await until(async () => (await gw.api<{ items: unknown[] }>('GET', '/v1/sessions', { token: true })).body.items.length === 0, 'the session to close');
    await connect('twin-1', credential);
    expect(await statusOf('cloned-credential')).toBe('pass');
    expect(await statusOf('client-id-takeover')).toBe('pass');

    // Six connections with the same certificate, each taking over the one before.
    for (let i = 0; i < 6; i++) await connect('twin-1', credential);
    await until(async () => (await registry().queryAudit({ action: 'mqtt.takeover', deviceId: 'twin-1' })).length >= 6, 'six takeovers audited');
    const [entry] = await registry().queryAudit({ action: 'mqtt.takeover', deviceId: 'twin-1', limit: 1 });
    expect(entry?.detail).toMatchObject({ serial: credential.serial, previous: { serial: credential.serial, connectedAt: expect.any(String) } });

    const cloned = (await checks('cloned-credential')).items[0];
    expect(cloned).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: 'twin-1', detail: expect.stringContaining(`certificate ${credential.serial} connected twice`) }] });
    expect(cloned?.nextStep).toContain('keyCompromise');
    expect((await checks('client-id-takeover')).items[0]).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: 'twin-1' }] });

    // A failed check: exit status 1, in the --json form too.
    const failed = await cli(['--json', '--id', 'cloned-credential']);
    expect(failed.exitCode).toBe(1);
    expect(JSON.parse(failed.out)).toMatchObject({ status: 'fail', items: [{ id: 'cloned-credential', status: 'fail' }] });

    // Prometheus: one series per check, findings and status (2 = fail).
    const metrics = (await gw.api<string>('GET', '/metrics')).body;
    expect(metrics).toMatch(/fleetgate_check_findings\{check="cloned-credential"\} 1/);
    expect(metrics).toMatch(/fleetgate_check_status\{check="cloned-credential"\} 2/);
    expect(metrics).toMatch(/fleetgate_check_status\{check="ca-expiry"\} 0/);
  });

  it('inactive-identity-session: a suspension whose kick never reached the broker fires; a revocation that cuts the session clears it', async () => {
    const credential = await gw.createDevice('stray-1');
    const client = await connect('stray-1', credential);
    expect(await statusOf('inactive-identity-session')).toBe('pass');
    // Straight into the registry, without the event the brokers act on: the session stays up.
    await registry().setDeviceStatus({ id: 'stray-1', status: 'suspended', reason: 'test: lost event', audit: { actor: 'test', action: 'device.suspend', result: 'ok' } });
    const fired = (await checks('inactive-identity-session')).items[0];
    expect(fired).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: 'stray-1', detail: expect.stringContaining('suspended, still connected') }] });

    expect((await gw.api('POST', '/v1/devices/stray-1/revoke', { token: true, body: { reason: 'keyCompromise' } })).status).toBe(200);
    expect(await closed(client)).toBe(true);
    await until(async () => (await statusOf('inactive-identity-session')) === 'pass', 'the check to clear');
  });

  it('permissive-claim: an unlimited claim fires, a limited one does not, revoking clears', async () => {
    await gw.issueClaim({ maxUses: 10 });
    expect(await statusOf('permissive-claim')).toBe('pass');
    const open = await gw.issueClaim({});
    expect((await checks('permissive-claim')).items[0]).toMatchObject({ status: 'warn', findings: [{ subject: `claim ${open.claimId}`, detail: expect.stringContaining('unlimited uses') }] });
    expect((await gw.api('POST', `/v1/claims/${open.claimId}/revoke`, { token: true })).status).toBe(200);
    expect(await statusOf('permissive-claim')).toBe('pass');
  });

  it('permissive-policy: a device policy granting "#" fires; narrowing it clears', async () => {
    expect((await gw.api('PUT', '/v1/policies/default', { token: true, body: { statements: [{ effect: 'allow', actions: ['subscribe', 'receive'], topics: ['#'] }] } })).status).toBe(200);
    expect((await checks('permissive-policy')).items[0]).toMatchObject({ status: 'fail', findings: [{ subject: 'policy default', detail: expect.stringContaining('templates default') }] });
    expect((await gw.api('PUT', '/v1/policies/default', { token: true, body: { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] }] } })).status).toBe(200);
    expect(await statusOf('permissive-policy')).toBe('pass');
  });

  it('manufacturer-ca-expiry: a registered birth-certificate CA close to its end fires; revoking its claim clears', async () => {
    // A CA made so that its 20-year validity ends 100 days from now.
    const made = new Date(Date.now() - (20 * 365 - 100) * 86_400_000);
    const manufacturer = await createRootCa({ commonName: 'Checks Birth CA', clock: fixedClock(made) });
    const daysLeft = (manufacturer.certificate.notAfter.getTime() - Date.now()) / 86_400_000;
    expect(daysLeft).toBeGreaterThan(30);
    expect(daysLeft).toBeLessThan(180);
    expect(await statusOf('manufacturer-ca-expiry')).toBe('pass');
    const registered = await gw.api<{ claimId?: string; id?: string }>('POST', '/v1/claim-issuers', { body: { name: 'checks-mfr', template: 'default', certificate: manufacturer.certificate.toString('pem') }, token: true });
    expect(registered.status).toBe(201);
    expect((await checks('manufacturer-ca-expiry')).items[0]).toMatchObject({ status: 'warn', findings: [{ subject: 'manufacturer CA mfr-checks-mfr', detail: expect.stringContaining('CN=Checks Birth CA') }] });
    expect((await gw.api('POST', '/v1/claims/mfr-checks-mfr/revoke', { token: true })).status).toBe(200);
    expect(await statusOf('manufacturer-ca-expiry')).toBe('pass');
  });

  it('ca-expiry: the registry\'s CAs; a CA certificate 20 days from its end fails, and clears once it is retired', async () => {
    const cas = await checkedCas(registry());
    expect(cas.map((ca) => ca.role).sort()).toEqual(['claim', 'device', 'root']);
    expect(await statusOf('ca-expiry')).toBe('pass');
    // A cross-certificate row (no key of its own) whose validity ends in 20 days.
    const old = await createRootCa({ commonName: 'Ageing cross', clock: fixedClock(new Date(Date.now() - (20 * 365 - 20) * 86_400_000)) });
    const pem = old.certificate.toString('pem');
    const fingerprint = createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
    const root = cas.find((ca) => ca.role === 'root')!;
    const id = fingerprint.slice(0, 16);
    await registry().changeCertificateAuthorities({
      add: [{ id, role: 'cross', state: 'active', fingerprint, subject: 'CN=Ageing cross', issuerId: root.id, crossOf: root.id, pem, keyRef: null, notBefore: old.certificate.notBefore, notAfter: old.certificate.notAfter }],
      audit: { actor: 'test', action: 'ca.add', result: 'ok' },
    });
    const fired = (await checks('ca-expiry')).items[0];
    expect(fired).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: `cross CA ${id}`, detail: expect.stringMatching(/expires in \d+ days/) }] });
    expect(fired?.nextStep).toContain('fleetgate ca rotate');
    await registry().changeCertificateAuthorities({ transitions: [{ id, from: 'active', to: 'retired' }], audit: { actor: 'test', action: 'ca.retire', result: 'ok' } });
    expect(await statusOf('ca-expiry')).toBe('pass');
  });
});
