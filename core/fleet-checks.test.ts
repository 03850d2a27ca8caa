import { describe, expect, it } from 'vitest';
import { anyCheckFailed, defaultFleetCheckSettings, evaluateFleetChecks, type FleetCheckId, type FleetFacts, permissiveGrants } from './fleet-checks.ts';
import { backendPolicy, defaultDevicePolicy } from './policy.ts';

const now = new Date('2027-01-01T00:00:00Z');
const day = 86_400_000;
const at = (offsetMs: number) => new Date(now.getTime() + offsetMs);

/** A healthy fleet: every check passes. */
const healthy: FleetFacts = {
  now,
  cas: [
    { id: 'root', role: 'root', state: 'active', subject: 'CN=root', notAfter: at(3650 * day) },
    { id: 'device', role: 'device', state: 'active', subject: 'CN=device', notAfter: at(1000 * day) },
    { id: 'mfr-acme', role: 'manufacturer', state: 'active', subject: 'CN=acme', notAfter: at(400 * day) },
  ],
  expiringCertificates: [],
  renewalOverdue: [],
  inactiveSessions: [],
  takeovers: [],
  claims: [{ id: 'batch-1', kind: 'claim-certificate', allowlisted: false, template: 'default', maxUses: 100, uses: 3, expiresAt: at(30 * day), status: 'active' }],
  policies: [
    { name: 'default', document: defaultDevicePolicy, templates: ['default'], overrides: 0 },
    { name: 'backend', document: backendPolicy, templates: [], overrides: 0 },
  ],
  lastAuditVerification: { at: at(-3600_000), ok: true },
};

const takeover = (clientId: string, ms: number, serial = '01', previousSerial = serial, previousMs = ms - 5_000) => ({
  clientId,
  at: at(ms),
  certificateSerial: serial,
  remoteAddress: '192.0.2.1:5000',
  previous: { certificateSerial: previousSerial, connectedAt: at(previousMs), remoteAddress: '198.51.100.7:6000' },
});

const check = (facts: FleetFacts, id: FleetCheckId) => {
  const [result] = evaluateFleetChecks(facts, defaultFleetCheckSettings, [id]);
  if (result === undefined) throw new Error('no result');
  return result;
};

// Each check: facts that make it fire (with the status expected), and the nearby facts that leave it clear.
const cases: { id: FleetCheckId; fires: Partial<FleetFacts>; status: 'warn' | 'fail'; clears: Partial<FleetFacts>; says: RegExp }[] = [
  {
    id: 'ca-expiry',
    fires: { cas: [{ id: 'device', role: 'device', state: 'active', subject: 'CN=device', notAfter: at(100 * day) }] },
    status: 'warn',
    clears: { cas: [{ id: 'device', role: 'device', state: 'active', subject: 'CN=device', notAfter: at(181 * day) }, { id: 'old', role: 'device', state: 'retired', subject: 'CN=old', notAfter: at(-1 * day) }] },
    says: /rotate/i,
  },
  {
    id: 'device-certificate-expiry',
    fires: { expiringCertificates: [{ template: 'sensors', count: 120, sample: ['s-1', 's-2'] }] },
    status: 'warn',
    clears: { expiringCertificates: [] },
    says: /rotation campaign for these 120 devices/,
  },
  {
    id: 'inactive-identity-session',
    fires: { inactiveSessions: [{ deviceId: 'd-9', status: 'revoked', certificateSerial: '09' }] },
    status: 'fail',
    clears: { inactiveSessions: [] },
    says: /suspend or revoke/,
  },
  {
    id: 'cloned-credential',
    fires: { takeovers: [takeover('d-1', -60_000, '0a', '0a', -90_000)] },
    status: 'fail',
    // The same certificate after more than a minute (a reconnect), and a renewal's new certificate at once.
    clears: { takeovers: [takeover('d-1', -60_000, '0a', '0a', -200_000), takeover('d-2', -1_000, '0c', '0b', -2_000)] },
    says: /keyCompromise/,
  },
  {
    id: 'client-id-takeover',
    fires: { takeovers: Array.from({ length: 6 }, (_, i) => takeover('d-1', -i * 60_000, i % 2 ? '01' : '02', i % 2 ? '02' : '01', -i * 60_000 - 120_000)) },
    status: 'fail',
    clears: { takeovers: [...Array.from({ length: 5 }, (_, i) => takeover('d-1', -i * 60_000, '01', '01', -i * 60_000 - 120_000)), takeover('d-1', -11 * 60_000, '01', '01', -13 * 60_000)] },
    says: /fighting/,
  },
  {
    id: 'renewal-overdue',
    fires: { renewalOverdue: [{ template: 'default', count: 3, sample: ['a', 'b', 'c'] }] },
    status: 'warn',
    clears: { renewalOverdue: [] },
    says: /rotation campaign/,
  },
  {
    id: 'permissive-claim',
    fires: { claims: [{ id: 'forever', kind: 'claim-certificate', allowlisted: false, template: 'default', maxUses: null, uses: 0, expiresAt: at(3000 * day), status: 'active' }] },
    status: 'warn',
    // Revoked, expired, limited and short, and a manufacturer CA whose template requires an allow-list.
    clears: {
      claims: [
        { id: 'revoked', kind: 'claim-certificate', allowlisted: false, template: 'default', maxUses: null, uses: 0, expiresAt: at(3000 * day), status: 'revoked' },
        { id: 'expired', kind: 'claim-certificate', allowlisted: false, template: 'default', maxUses: null, uses: 0, expiresAt: at(-day), status: 'active' },
        { id: 'limited', kind: 'claim-certificate', allowlisted: false, template: 'default', maxUses: 10, uses: 0, expiresAt: at(365 * day), status: 'active' },
        { id: 'mfr-acme', kind: 'manufacturer-ca', allowlisted: true, template: 'acme', maxUses: null, uses: 0, expiresAt: at(3000 * day), status: 'active' },
      ],
    },
    says: /claim revoke/,
  },
  {
    id: 'permissive-policy',
    fires: { policies: [{ name: 'open', document: { statements: [{ effect: 'allow', actions: ['subscribe'], topics: ['#'] }] }, templates: [], overrides: 2 }] },
    status: 'fail',
    // The backend policy is wide, but only services use it; a literal shared topic is not a wildcard.
    clears: {
      policies: [
        { name: 'backend', document: backendPolicy, templates: [], overrides: 0 },
        { name: 'shared', document: { statements: [{ effect: 'allow', actions: ['receive'], topics: ['devices/${device.id}/+/x', 'broadcast/firmware'] }] }, templates: ['t'], overrides: 0 },
      ],
    },
    says: /policy set/,
  },
  {
    id: 'manufacturer-ca-expiry',
    fires: { cas: [{ id: 'mfr-acme', role: 'manufacturer', state: 'active', subject: 'CN=acme', notAfter: at(20 * day) }] },
    status: 'fail',
    clears: { cas: [{ id: 'mfr-acme', role: 'manufacturer', state: 'active', subject: 'CN=acme', notAfter: at(181 * day) }] },
    says: /register-issuer/,
  },
  {
    id: 'audit-chain-verification',
    fires: { lastAuditVerification: { at: at(-25 * 3600_000), ok: true } },
    status: 'warn',
    clears: { lastAuditVerification: { at: at(-23 * 3600_000), ok: true } },
    says: /fleetgate audit verify/,
  },
];

describe('fleet health checks (core rules)', () => {
  it('pass on a healthy fleet, and cover every check', () => {
    const results = evaluateFleetChecks(healthy);
    expect(results.map((r) => [r.id, r.status])).toEqual(results.map((r) => [r.id, 'pass']));
    expect(results.every((r) => r.nextStep === null && r.count === 0)).toBe(true);
    expect(anyCheckFailed(results)).toBe(false);
    expect(new Set(cases.map((c) => c.id)).size).toBe(results.length);
  });

  for (const c of cases) {
    it(`${c.id} fires, says what to do next, and clears`, () => {
      const fired = check({ ...healthy, ...c.fires }, c.id);
      expect(fired.status).toBe(c.status);
      expect(fired.count).toBeGreaterThan(0);
      expect(fired.findings.length).toBeGreaterThan(0);
      expect(fired.nextStep).toMatch(c.says);
      const cleared = check({ ...healthy, ...c.clears }, c.id);
      expect(cleared).toMatchObject({ status: 'pass', count: 0, findings: [], nextStep: null });
    });
  }

  it('fail a CA within 30 days or expired, and a verification that found the chain broken', () => {
    expect(check({ ...healthy, cas: [{ id: 'root', role: 'root', state: 'active', subject: 'CN=root', notAfter: at(-day) }] }, 'ca-expiry').status).toBe('fail');
    const broken = check({ ...healthy, lastAuditVerification: { at: at(-60_000), ok: false, firstBrokenId: 42 } }, 'audit-chain-verification');
    expect(broken).toMatchObject({ status: 'fail', findings: [{ detail: expect.stringContaining('entry 42') }] });
    expect(check({ ...healthy, lastAuditVerification: undefined }, 'audit-chain-verification').findings[0]?.detail).toBe('never verified');
  });

  it('list at most maxFindings findings but count them all', () => {
    const inactiveSessions = Array.from({ length: 50 }, (_, i) => ({ deviceId: `d-${i}`, status: 'suspended', certificateSerial: `${i}` }));
    const result = check({ ...healthy, inactiveSessions }, 'inactive-identity-session');
    expect(result.count).toBe(50);
    expect(result.findings).toHaveLength(defaultFleetCheckSettings.maxFindings);
  });

  it.each([
    ['#', true],
    ['+/#', true],
    ['devices/#', true],
    ['devices/+/telemetry', true],
    ['devices/${device.attributes.peer}/#', true],
    ['fleet/${device.template}/+', true],
    ['devices/${device.id}/#', false],
    ['devices/${device.id}/+/cmd', false],
    ['broadcast/firmware', false],
  ])('permissiveGrants judges %s as wide: %s', (topic, wide) => {
    expect(permissiveGrants({ statements: [{ effect: 'allow', actions: ['subscribe'], topics: [topic] }] }).length > 0).toBe(wide);
    // A deny statement never widens anything.
    expect(permissiveGrants({ statements: [{ effect: 'deny', actions: ['subscribe'], topics: [topic] }] })).toEqual([]);
  });
});
