import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultDevicePolicy, type ErrorCode, isFleetgateError, type RotationSelector } from '../../core/index.ts';
import { type AuditInput, type NewCertificate, openPostgresRegistry, openSqliteRegistry, type Registry } from '../../registry/index.ts';
import { testDatabaseUrl, testSchemas } from '../helpers/postgres.ts';

/**
 * Rotation campaign storage, the same on SQLite and PostgreSQL: selection, the scheduler's dispatch, the
 * broker's notification, renewed and failed read from certificates and the audit trail, state changes,
 * and all of it still there after a restart (README "Rotation campaigns").
 */
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-rotation-'));
const schemas = testSchemas();
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await schemas.dropAll();
});

/** A clock the test moves forward, so "issued after the campaign started" is decided by time, not luck. */
function steppingClock(start: string) {
  let now = new Date(start).getTime();
  return { now: () => new Date(now), advance: (ms = 1_000) => void (now += ms) };
}

const audit = (action: string, extra: Partial<AuditInput> = {}): AuditInput => ({ actor: 'operator:test', action, result: 'ok', ...extra });

function certificate(n: string, overrides: Partial<NewCertificate> = {}): NewCertificate {
  const hex = Buffer.from(n).toString('hex');
  return {
    serial: `7a${hex}`,
    fingerprint: `f1${hex}`,
    publicKeyHash: `e5${hex}`,
    notBefore: new Date('2025-01-01T00:00:00.000Z'),
    notAfter: new Date('2026-01-01T00:00:00.000Z'),
    pem: `-----BEGIN CERTIFICATE-----\nfake-${n}\n-----END CERTIFICATE-----\n`,
    ...overrides,
  };
}

async function refusal(work: Promise<unknown>): Promise<ErrorCode | string> {
  try {
    await work;
  } catch (error) {
    return isFleetgateError(error) ? error.code : String(error);
  }
  return 'no refusal';
}

const backends: [string, (clock: ReturnType<typeof steppingClock>) => { open(): Promise<Registry> }][] = [
  ['sqlite', (clock) => {
    const path = join(dir, `r-${Math.random().toString(16).slice(2)}.db`);
    return { open: () => openSqliteRegistry({ path, clock }) };
  }],
  ['postgres', (clock) => {
    const schema = schemas.fresh();
    return { open: () => openPostgresRegistry({ url: testDatabaseUrl, schema, clock }) };
  }],
];

describe.each(backends)('rotation campaigns on %s', (_name, backend) => {
  it('selects, dispatches, counts from certificates and audit, changes state, and survives a restart', async () => {
    const clock = steppingClock('2025-12-15T00:00:00.000Z');
    const store = backend(clock);
    let registry = await store.open();
    try {
      await registry.putPolicy('default', defaultDevicePolicy, audit('policy.put'));
      for (const name of ['sensors', 'other']) {
        await registry.putTemplate({ name, policy: 'default', validityDays: 365, keyTypes: ['EC P-256'], requireAllowlist: false, allowReenroll: false }, audit('template.put'));
      }
      const register = (id: string, template: string, kind: 'device' | 'service' = 'device', cert: Partial<NewCertificate> = {}) =>
        registry.registerCertificate({ device: { id, kind, template }, certificate: certificate(id, cert), mustBeNew: true, audit: audit('device.register') });
      for (const id of ['a1', 'a2', 'a3']) await register(id, 'sensors');
      await register('b1', 'other', 'device', { notAfter: new Date('2027-01-01T00:00:00.000Z') });
      await register('s1', 'sensors', 'service');
      await register('r1', 'sensors');
      await registry.setDeviceStatus({ id: 'r1', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
      clock.advance();

      // Refusals write nothing.
      const refused: [RotationSelector, ErrorCode][] = [
        [{ kind: 'ca', caId: 'device-2024' }, 'ROTATION_SELECTOR_INVALID'], // no such CA
        [{ kind: 'template', template: 'nope' }, 'TEMPLATE_NOT_FOUND'],
        [{ kind: 'ids', ids: ['a1', 'ghost'] }, 'ROTATION_SELECTOR_INVALID'],
        [{ kind: 'ids', ids: ['s1'] }, 'ROTATION_SELECTOR_INVALID'],
        [{ kind: 'ids', ids: ['r1'] }, 'ROTATION_SELECTOR_INVALID'],
        [{ kind: 'expires-within', days: 1 }, 'ROTATION_SELECTION_EMPTY'],
      ];
      for (const [selector, code] of refused) {
        expect(await refusal(registry.createRotationCampaign({ id: `x-${code}`, selector, ratePerSecond: 10, audit: audit('rotation.start') }))).toBe(code);
      }
      expect(await registry.listRotationCampaigns()).toEqual([]);

      // Services and revoked devices are never selected.
      const byTemplate = await registry.createRotationCampaign({ id: 'c-template', selector: { kind: 'template', template: 'sensors' }, ratePerSecond: 10, audit: audit('rotation.start') });
      expect(byTemplate).toMatchObject({ id: 'c-template', selector: 'template=sensors', ratePerSecond: 10, state: 'running', createdBy: 'operator:test', endedAt: null });
      expect(byTemplate.progress).toEqual({ selected: 3, pending: 3, notified: 0, renewed: 0, failed: 0, offline: 0 });
      clock.advance();
      const byExpiry = await registry.createRotationCampaign({ id: 'c-expiry', selector: { kind: 'expires-within', days: 30 }, ratePerSecond: 10, audit: audit('rotation.start') });
      expect(byExpiry.progress.selected).toBe(3); // b1 expires in 2027
      expect((await registry.listRotationCampaigns()).map((c) => c.id)).toEqual(['c-expiry', 'c-template']);
      await registry.changeRotationCampaign('c-expiry', 'close', audit('rotation.close'));
      clock.advance();

      // The scheduler reaches two devices; a broker notifies one of them.
      const reached = await registry.dispatchRotation('c-template', 2);
      expect(reached.map((r) => [r.deviceId, r.renewed])).toEqual([['a1', false], ['a2', false]]);
      expect(await registry.pendingRotations('a1')).toEqual([{ campaignId: 'c-template', state: 'offline' }]);
      expect(await registry.pendingRotations('a3')).toEqual([]); // not reached yet: the rate decides when
      clock.advance();
      expect(await registry.markRotationNotified('c-template', 'a1', audit('rotation.notify', { actor: 'broker' }))).toBe(true);
      expect(await registry.markRotationNotified('c-template', 'a1', audit('rotation.notify', { actor: 'broker' }))).toBe(false);
      expect(await registry.markRotationNotified('c-template', 'a3', audit('rotation.notify', { actor: 'broker' }))).toBe(false);
      expect(await registry.pendingRotations('a1')).toEqual([{ campaignId: 'c-template', state: 'notified' }]);
      expect((await registry.getRotationCampaign('c-template'))?.progress).toEqual({ selected: 3, pending: 1, notified: 1, renewed: 0, failed: 0, offline: 1 });
      clock.advance();

      // a1's renewal is refused (any transport audits device.renew), a2 renews without having been told.
      await registry.appendAudit({ actor: 'device:a1', action: 'device.renew', result: 'refused', code: 'PKI_CSR_MALFORMED', deviceId: 'a1' });
      await registry.registerCertificate({ device: { id: 'a2', kind: 'device', template: 'sensors' }, certificate: certificate('a2-new', { replaces: certificate('a2').serial }), mustBeNew: false, audit: audit('device.renew') });
      expect((await registry.getRotationCampaign('c-template'))?.progress).toEqual({ selected: 3, pending: 1, notified: 1, renewed: 1, failed: 1, offline: 0 });
      expect(await registry.pendingRotations('a1')).toEqual([]); // failed: not told again on reconnect
      expect((await registry.listRotationDevices('c-template')).map((row) => [row.deviceId, row.state, row.outcome])).toEqual([
        ['a1', 'notified', 'failed'],
        ['a2', 'offline', 'renewed'],
        ['a3', 'pending', 'pending'],
      ]);
      expect((await registry.listRotationDevices('c-template', { outcome: 'renewed' })).map((row) => row.deviceId)).toEqual(['a2']);
      expect((await registry.listRotationDevices('c-template', { after: 'a1', limit: 1 })).map((row) => row.deviceId)).toEqual(['a2']);
      expect(await registry.pendingRotations('a2')).toEqual([]); // renewed

      // Paused: nothing more is dispatched; resumed: the rest is.
      await registry.changeRotationCampaign('c-template', 'pause', audit('rotation.pause'));
      expect(await registry.dispatchRotation('c-template', 5)).toEqual([]);
      expect(await registry.pendingRotations('a1')).toEqual([]);
      expect(await refusal(registry.changeRotationCampaign('c-template', 'pause', audit('rotation.pause')))).toBe('ROTATION_CAMPAIGN_STATE');
      expect(await refusal(registry.changeRotationCampaign('nope', 'pause', audit('rotation.pause')))).toBe('ROTATION_CAMPAIGN_NOT_FOUND');
      await registry.changeRotationCampaign('c-template', 'resume', audit('rotation.resume'));
      expect((await registry.dispatchRotation('c-template', 5)).map((r) => r.deviceId)).toEqual(['a3']);
      expect(await registry.completeRotationCampaign('c-template', audit('rotation.complete'))).toBeUndefined(); // not everyone renewed

      // A restart: everything is read back as it was.
      const before = await registry.getRotationCampaign('c-template');
      const rows = await registry.listRotationDevices('c-template');
      await registry.close();
      registry = await store.open();
      expect(await registry.getRotationCampaign('c-template')).toEqual(before);
      expect(await registry.listRotationDevices('c-template')).toEqual(rows);
      expect(rows.map((row) => [row.deviceId, row.state])).toEqual([['a1', 'notified'], ['a2', 'offline'], ['a3', 'offline']]);

      // Everyone renews: the campaign completes, and is final.
      clock.advance();
      for (const id of ['a1', 'a3']) {
        await registry.registerCertificate({ device: { id, kind: 'device', template: 'sensors' }, certificate: certificate(`${id}-new`, { replaces: certificate(id).serial }), mustBeNew: false, audit: audit('device.renew') });
      }
      const completed = await registry.completeRotationCampaign('c-template', audit('rotation.complete', { actor: 'scheduler' }));
      expect(completed).toMatchObject({ state: 'completed', progress: { selected: 3, renewed: 3, failed: 0 } });
      expect(completed?.endedAt).toEqual(clock.now());
      expect(await refusal(registry.changeRotationCampaign('c-template', 'resume', audit('rotation.resume')))).toBe('ROTATION_CAMPAIGN_STATE');
      const trail = (await registry.queryAudit({ limit: 100 })).map((entry) => entry.action).filter((action) => action.startsWith('rotation.'));
      expect(trail.reverse()).toEqual(['rotation.start', 'rotation.start', 'rotation.close', 'rotation.notify', 'rotation.pause', 'rotation.resume', 'rotation.complete']);
      expect((await registry.verifyAudit()).ok).toBe(true);
    } finally {
      await registry.close();
    }
  });
});
