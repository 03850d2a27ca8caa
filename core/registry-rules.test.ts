import { describe, expect, it } from 'vitest';
import { type CertificateRecordingFacts, certificateRecordingRefusal, decideStatusChange, effectivePolicyName, keyBindingRefusal } from './registry-rules.ts';

const base: CertificateRecordingFacts = {
  id: 'sn-1',
  existing: undefined,
  mustBeNew: false,
  template: { name: 't1', exists: true },
  policy: null,
  replaces: null,
  publicKeyHash: 'k1',
  keyHolder: undefined,
};
const active = { status: 'active' };

/** What may be recorded outside claim enrollment, and in which order the refusals come. */
describe('certificateRecordingRefusal', () => {
  it.each<[string, Partial<CertificateRecordingFacts>, string | undefined]>([
    ['a new identity', {}, undefined],
    ['a renewal of an active certificate of the same identity', { existing: active, replaces: { serial: 'a1', found: { deviceId: 'sn-1', status: 'active' } } }, undefined],
    ['an existing id when the caller wants a new one', { existing: active, mustBeNew: true, keyHolder: 'other' }, 'DEVICE_EXISTS'],
    ['a revoked identity, before anything else', { existing: { status: 'revoked' }, keyHolder: 'other' }, 'AUTH_DEVICE_REVOKED'],
    ['an unknown template for a new identity', { template: { name: 'gone', exists: false }, keyHolder: 'other' }, 'TEMPLATE_NOT_FOUND'],
    ['an unknown policy for a new identity', { policy: { name: 'gone', exists: false } }, 'POLICY_NOT_FOUND'],
    ['template and policy are not looked at for an existing identity', { existing: active, template: { name: 'gone', exists: false } }, undefined],
    ['a renewal of a certificate of another identity', { existing: active, replaces: { serial: 'a1', found: { deviceId: 'sn-2', status: 'active' } } }, 'CERT_NOT_FOUND'],
    ['a renewal of an unknown certificate', { existing: active, replaces: { serial: 'a1', found: undefined } }, 'CERT_NOT_FOUND'],
    ['a renewal of a superseded certificate', { existing: active, replaces: { serial: 'a1', found: { deviceId: 'sn-1', status: 'superseded' } }, keyHolder: 'other' }, 'AUTH_CERT_REVOKED'],
    ['a key another identity holds', { keyHolder: 'sn-2' }, 'PKI_PUBLIC_KEY_IN_USE'],
    ['a renewal after expiry of a certificate with no successor', { existing: active, replaces: { serial: 'a1', found: { deviceId: 'sn-1', status: 'active' }, successors: 0 } }, undefined],
    ['a renewal after expiry of a certificate renewed once already', { existing: active, replaces: { serial: 'a1', found: { deviceId: 'sn-1', status: 'active' }, successors: 1 } }, 'RENEW_EXPIRED_ALREADY_RENEWED'],
    ['an ordinary renewal of a certificate renewed before', { existing: active, replaces: { serial: 'a1', found: { deviceId: 'sn-1', status: 'active' } } }, undefined],
  ])('%s', (_name, facts, code) => {
    expect(certificateRecordingRefusal({ ...base, ...facts })?.code).toBe(code);
  });

  it('names the holder of a key in use', () => {
    expect(keyBindingRefusal('k1', 'sn-2')).toEqual({ code: 'PKI_PUBLIC_KEY_IN_USE', detail: { publicKeyHash: 'k1', boundTo: 'sn-2' } });
    expect(keyBindingRefusal('k1', undefined)).toBeUndefined();
  });
});

describe('decideStatusChange', () => {
  it.each([
    ['active', 'suspended', 'write'],
    ['suspended', 'active', 'write'],
    ['active', 'revoked', 'write'],
    ['revoked', 'revoked', 'unchanged'],
    ['revoked', 'active', 'refused'],
    ['revoked', 'suspended', 'refused'],
  ])('%s -> %s: %s (revocation is final)', (current, requested, outcome) => {
    expect(decideStatusChange('sn-1', current, requested).outcome).toBe(outcome);
  });
});

describe('effectivePolicyName', () => {
  it.each<[string | null, { policy: string } | undefined, string | null]>([
    ['own', { policy: 'template' }, 'own'],
    [null, { policy: 'template' }, 'template'],
    [null, undefined, null],
    ['own', undefined, 'own'],
  ])('identity %s, template %o: %s', (policy, template, expected) => {
    expect(effectivePolicyName({ policy }, template)).toBe(expected);
  });
});
