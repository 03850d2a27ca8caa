import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backendPolicy, defaultDevicePolicy, fixedClock, type FleetCheckId, type SessionSummary } from '../../core/index.ts';
import { collectFleetFacts, createFleetChecks } from '../../provisioning/index.ts';
import { type AuditInput, type NewCertificate, openPostgresRegistry, openSqliteRegistry, type Registry } from '../../registry/index.ts';
import { testDatabaseUrl, testSchemas } from '../helpers/postgres.ts';

/**
 * The fleet health checks' collector on real registries (SQLite and PostgreSQL): each registry-backed check
 * fires on facts written through the registry's own methods, and clears when the fleet is put right.
 * The live-session checks on a real broker are in test/api/fleet-checks.test.ts.
 */

const now = new Date('2030-06-01T12:00:00.000Z');
const day = 86_400_000;
const at = (offsetMs: number) => new Date(now.getTime() + offsetMs);
const audit = (action: string, overrides: Partial<AuditInput> = {}): AuditInput => ({ actor: 'test', action, result: 'ok', ...overrides });

let n = 0;
/** Stand-in certificate data (the registry stores it and never parses it), valid [now+from, now+to] days. */
function certificate(fromDays: number, toDays: number, replaces?: string): NewCertificate {
  const hex = (n += 1).toString(16).padStart(6, '0');
  return { serial: `7c${hex}`, fingerprint: `f2${hex}`, publicKeyHash: `e6${hex}`, notBefore: at(fromDays * day), notAfter: at(toDays * day), pem: `fake-${hex}`, ...(replaces ? { replaces } : {}) };
}

function describeCollector(name: string, open: () => Promise<Registry>): void {
  describe(`fleet check facts: ${name}`, () => {
    let registry: Registry;
    let sessions: SessionSummary[];

    beforeEach(async () => {
      registry = await open();
      sessions = [];
      await registry.putPolicy('default', defaultDevicePolicy, audit('policy.put'));
      await registry.putPolicy('backend', backendPolicy, audit('policy.put'));
      await registry.putPolicy('open', { statements: [{ effect: 'allow', actions: ['subscribe', 'receive'], topics: ['devices/+/telemetry'] }] }, audit('policy.put'));
      for (const template of ['sensors', 'other']) {
        await registry.putTemplate({ name: template, policy: 'default', validityDays: 365, keyTypes: ['EC P-256'], requireAllowlist: false, allowReenroll: false }, audit('template.put'));
      }
    });

    afterEach(async () => {
      await registry.close();
    });

    const register = (id: string, cert: NewCertificate, options: { template?: string; kind?: 'device' | 'service'; policy?: string } = {}) =>
      registry.registerCertificate({
        device: { id, kind: options.kind ?? 'device', template: options.template ?? 'sensors', ...(options.policy ? { policy: options.policy } : {}) },
        certificate: cert,
        mustBeNew: false,
        audit: audit('device.register'),
      });

    async function run(id: FleetCheckId, clock = fixedClock(now)) {
      const facts = await collectFleetFacts({ registry, sessions: { list: async () => sessions }, clock, listCas: async () => [] });
      const checks = createFleetChecks({ registry, sessions: { list: async () => sessions }, clock, listCas: async () => [] });
      const result = (await checks.run({ only: [id] })).results[0];
      return { facts, result: result! };
    }

    it('device-certificate-expiry and renewal-overdue: fire per template, clear once devices renewed', async () => {
      const expiring = await register('exp-1', certificate(-350, 10));
      await register('ok-1', certificate(-10, 355));
      const old = await register('renewed-1', certificate(-350, 10));
      await register('renewed-1', certificate(-1, 364, old.serial)); // issued, not used yet: counts as renewed
      const overdue = await register('over-1', certificate(-250, 115), { template: 'other' });
      await register('susp-1', certificate(-350, 10));
      await registry.setDeviceStatus({ id: 'susp-1', status: 'suspended', reason: null, audit: audit('device.suspend') });
      await register('svc-1', certificate(-350, 10), { kind: 'service' });
      await register('expired-1', certificate(-400, -35));

      const expiry = await run('device-certificate-expiry');
      expect(expiry.facts.expiringCertificates).toEqual([{ template: 'sensors', count: 1, sample: ['exp-1'] }]);
      expect(expiry.result).toMatchObject({ status: 'warn', count: 1, findings: [{ subject: 'template sensors', detail: expect.stringContaining('exp-1') }] });
      expect(expiry.result.nextStep).toContain('rotation campaign for these 1 device');
      const renewal = await run('renewal-overdue');
      expect(renewal.facts.renewalOverdue).toEqual([
        { template: 'other', count: 1, sample: ['over-1'] },
        { template: 'sensors', count: 1, sample: ['exp-1'] },
      ]);
      expect(renewal.result).toMatchObject({ status: 'warn', count: 2 });

      await register('exp-1', certificate(0, 365, expiring.serial));
      await register('over-1', certificate(0, 365, overdue.serial), { template: 'other' });
      expect((await run('device-certificate-expiry')).result).toMatchObject({ status: 'pass', count: 0 });
      expect((await run('renewal-overdue')).result).toMatchObject({ status: 'pass', count: 0 });
    });

    it('inactive-identity-session: fires for a suspended or revoked identity still listed live, clears once it is resumed', async () => {
      const suspended = await register('susp-1', certificate(-10, 300));
      const active = await register('ok-1', certificate(-10, 300));
      await registry.setDeviceStatus({ id: 'susp-1', status: 'suspended', reason: 'repair', audit: audit('device.suspend') });
      sessions = [
        { clientId: 'susp-1', kind: 'device', certificateSerial: suspended.serial, remoteAddress: '192.0.2.1', connectedAt: at(-60_000) },
        { clientId: 'ok-1', kind: 'device', certificateSerial: active.serial, remoteAddress: '192.0.2.2', connectedAt: at(-60_000) },
        // A claim session's client id is a serial, which may equal a suspended device's id: not its session.
        { clientId: 'susp-1', kind: 'claim', certificateSerial: 'c1', remoteAddress: '192.0.2.3', connectedAt: at(-60_000) },
      ];
      const fired = await run('inactive-identity-session');
      expect(fired.result).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: 'susp-1', detail: expect.stringContaining('suspended') }] });

      await registry.setDeviceStatus({ id: 'susp-1', status: 'active', reason: null, audit: audit('device.resume') });
      expect((await run('inactive-identity-session')).result).toMatchObject({ status: 'pass' });
    });

    it('permissive-claim: fires for an unlimited claim, clears when it is revoked', async () => {
      await registry.createClaim({ id: 'batch-limited', template: 'sensors', certificateSerial: 'c0', maxUses: 10, expiresAt: at(30 * day) }, audit('claim.create'));
      await registry.createClaim({ id: 'batch-open', template: 'sensors', certificateSerial: 'c1', maxUses: null, expiresAt: at(30 * day) }, audit('claim.create'));
      expect((await run('permissive-claim')).result).toMatchObject({ status: 'warn', count: 1, findings: [{ subject: 'claim batch-open', detail: expect.stringContaining('unlimited uses') }] });
      await registry.revokeClaim('batch-open', audit('claim.revoke'));
      expect((await run('permissive-claim')).result).toMatchObject({ status: 'pass' });
    });

    it('permissive-policy: only policies devices get; fires for a template or a device override, clears when narrowed', async () => {
      // "backend" (devices/#) and "open" exist but no template or device uses them.
      await register('svc-1', certificate(-1, 300), { kind: 'service', policy: 'backend' });
      expect((await run('permissive-policy')).result).toMatchObject({ status: 'pass' });

      await register('dev-1', certificate(-1, 300), { policy: 'open' });
      const override = await run('permissive-policy');
      expect(override.result).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: 'policy open', detail: expect.stringContaining('1 device override') }] });
      await registry.putTemplate({ name: 'other', policy: 'open', validityDays: 365, keyTypes: ['EC P-256'], requireAllowlist: false, allowReenroll: false }, audit('template.put'));
      expect((await run('permissive-policy')).result.findings[0]?.detail).toContain('templates other');

      await registry.putPolicy('open', { statements: [{ effect: 'allow', actions: ['subscribe', 'receive'], topics: ['devices/${device.id}/+/telemetry'] }] }, audit('policy.put'));
      expect((await run('permissive-policy')).result).toMatchObject({ status: 'pass' });
    });

    it('cloned-credential and client-id-takeover: fire on recorded takeovers, clear once they are old', async () => {
      const takeover = (deviceId: string, ago: number, serial: string, previousSerial: string, previousAgo: number) =>
        registry.appendAudit(
          audit('mqtt.takeover', {
            actor: `device:${deviceId}`,
            deviceId,
            at: at(-ago),
            detail: { remote: '192.0.2.10:4000', serial, previous: { serial: previousSerial, remote: '198.51.100.20:5000', connectedAt: at(-previousAgo).toISOString() } },
          }),
        );
      await takeover('clone-1', 40_000, 'aa', 'aa', 70_000);
      for (let i = 0; i < 6; i++) await takeover('fight-1', i * 60_000, i % 2 ? 'b1' : 'b2', i % 2 ? 'b2' : 'b1', i * 60_000 + 300_000);
      const cloned = await run('cloned-credential');
      expect(cloned.facts.takeovers).toHaveLength(7);
      expect(cloned.result).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: 'clone-1', detail: expect.stringContaining('certificate aa connected twice 30 s apart') }] });
      expect((await run('client-id-takeover')).result).toMatchObject({ status: 'fail', count: 1, findings: [{ subject: 'fight-1', detail: expect.stringContaining('6 takeovers') }] });

      const later = fixedClock(at(2 * 3600_000));
      expect((await run('cloned-credential', later)).result).toMatchObject({ status: 'pass' });
      expect((await run('client-id-takeover', later)).result).toMatchObject({ status: 'pass' });
    });

    it('audit-chain-verification: fires when never or not recently verified, or when the last verification failed', async () => {
      expect((await run('audit-chain-verification')).result).toMatchObject({ status: 'warn', findings: [{ detail: 'never verified' }] });
      await registry.appendAudit(audit('audit.verify', { at: at(-30 * 3600_000), detail: { ok: true, entries: 5 } }));
      expect((await run('audit-chain-verification')).result).toMatchObject({ status: 'warn', findings: [{ detail: expect.stringContaining('30 hours ago') }] });
      await registry.appendAudit(audit('audit.verify', { at: at(-3600_000), detail: { ok: true, entries: 6 } }));
      expect((await run('audit-chain-verification')).result).toMatchObject({ status: 'pass' });
      await registry.appendAudit(audit('audit.verify', { result: 'refused', at: at(-60_000), detail: { ok: false, entries: 3, firstBrokenId: 4 } }));
      expect((await run('audit-chain-verification')).result).toMatchObject({ status: 'fail', findings: [{ detail: expect.stringContaining('entry 4') }] });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'fleetgate-checks-'));
let files = 0;
const schemas = testSchemas();
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await schemas.dropAll();
});

describeCollector('sqlite', () => openSqliteRegistry({ path: join(dir, `registry-${(files += 1)}.db`), clock: fixedClock(now) }));
describeCollector('postgres', () => openPostgresRegistry({ url: testDatabaseUrl, schema: schemas.fresh(), clock: fixedClock(now) }));
