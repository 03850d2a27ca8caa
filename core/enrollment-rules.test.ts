import { describe, expect, it } from 'vitest';
import { decideEnrollment, type EnrollmentFacts } from './enrollment-rules.ts';

const now = new Date('2026-01-01T00:00:00Z');
const base: EnrollmentFacts = {
  claim: { template: 't1', status: 'active', expiresAt: new Date('2027-01-01T00:00:00Z'), uses: 0, maxUses: 10 },
  template: { requireAllowlist: false, allowReenroll: true },
  serialAllowed: false,
  existing: undefined,
  holdsSameKey: false,
  now,
};
const device = { kind: 'device', status: 'active', template: 't1', policy: null };

/** Who a claim of a re-enrollable template may (re-)enroll, and in which order the refusals come. */
describe('decideEnrollment', () => {
  it.each<[string, Partial<EnrollmentFacts>, string]>([
    ['a new serial', {}, 'enroll'],
    ['an active device of the claim template (factory reset)', { existing: device }, 'reenroll'],
    ['the same key again (lost reply)', { existing: device, holdsSameKey: true }, 'repeat'],
    ['the same key again on an exhausted claim', { existing: device, holdsSameKey: true, claim: { ...base.claim, uses: 10 } }, 'repeat'],
    ['the same key again when re-enrollment is off', { existing: device, holdsSameKey: true, template: { requireAllowlist: false, allowReenroll: false } }, 'repeat'],
    ['a service', { existing: { ...device, kind: 'service' } }, 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
    ["a service, with the service's own key", { existing: { ...device, kind: 'service' }, holdsSameKey: true }, 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
    ['any other kind of identity', { existing: { ...device, kind: 'operator' } }, 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
    ['a device of another template', { existing: { ...device, template: 't2' } }, 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
    ['a device of another template, with its own key', { existing: { ...device, template: 't2' }, holdsSameKey: true }, 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
    ['a revoked device', { existing: { ...device, status: 'revoked' } }, 'AUTH_DEVICE_REVOKED'],
    ['a revoked device, with its own key', { existing: { ...device, status: 'revoked' }, holdsSameKey: true }, 'AUTH_DEVICE_REVOKED'],
    ['a suspended device', { existing: { ...device, status: 'suspended' } }, 'AUTH_DEVICE_SUSPENDED'],
    ['a suspended device, with its own key', { existing: { ...device, status: 'suspended' }, holdsSameKey: true }, 'AUTH_DEVICE_SUSPENDED'],
    ['a device an operator gave its own policy, with another key', { existing: { ...device, policy: 'backend' } }, 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
    ['a device an operator gave its own policy, with its own key (lost reply)', { existing: { ...device, policy: 'backend' }, holdsSameKey: true }, 'repeat'],
    ['another key when re-enrollment is off', { existing: device, template: { requireAllowlist: false, allowReenroll: false } }, 'ENROLL_CLONE_SUSPECTED'],
    ['a revoked claim', { claim: { ...base.claim, status: 'revoked' } }, 'ENROLL_CLAIM_REVOKED'],
    ['an expired claim', { claim: { ...base.claim, expiresAt: now } }, 'ENROLL_CLAIM_EXPIRED'],
    ['an exhausted claim', { claim: { ...base.claim, uses: 10 } }, 'ENROLL_CLAIM_EXHAUSTED'],
    ['an exhausted claim, for a factory reset', { existing: device, claim: { ...base.claim, uses: 10 } }, 'ENROLL_CLAIM_EXHAUSTED'],
    ['a claim without a limit', { claim: { ...base.claim, uses: 1e6, maxUses: null } }, 'enroll'],
    ['a serial off a required allow-list', { template: { requireAllowlist: true, allowReenroll: true } }, 'ENROLL_SERIAL_NOT_ALLOWED'],
    ['a serial on a required allow-list', { template: { requireAllowlist: true, allowReenroll: true }, serialAllowed: true }, 'enroll'],
    ['a service, even by a revoked claim: the claim is looked at first', { existing: { ...device, kind: 'service' }, claim: { ...base.claim, status: 'revoked' } }, 'ENROLL_CLAIM_REVOKED'],
  ])('%s', (_name, facts, expected) => {
    const decision = decideEnrollment({ ...base, ...facts });
    expect(decision.outcome === 'refused' ? decision.code : decision.outcome).toBe(expected);
  });
});
