import { describe, expect, it } from 'vitest';
import { dayMs } from './pki/profiles.ts';
import { decideRenewalAfterExpiry, type RenewalAfterExpiryFacts } from './renewal-after-expiry.ts';

const now = new Date('2027-06-01T12:00:00Z');
const daysAgo = (days: number) => new Date(now.getTime() - days * dayMs);

const base: RenewalAfterExpiryFacts = { notAfter: daysAgo(10), now, renewAfterExpiryDays: 30, later: [], expiredSerial: 'aa01', publicKeyHash: 'key-new' };
const successor = (serial: string, publicKeyHash: string, status = 'active') => ({ serial, publicKeyHash, status, replaces: 'aa01' });

describe('decideRenewalAfterExpiry', () => {
  it.each<[string, Partial<RenewalAfterExpiryFacts>, string]>([
    ['expired 10 days ago, 30 days of grace', {}, 'renew'],
    ['expired a second ago', { notAfter: new Date(now.getTime() - 1000) }, 'renew'],
    ['one millisecond inside the grace', { notAfter: new Date(now.getTime() - 30 * dayMs + 1) }, 'renew'],
    ['exactly at the end of the grace', { notAfter: daysAgo(30) }, 'RENEW_EXPIRED_TOO_LATE'],
    ['expired 400 days ago', { notAfter: daysAgo(400) }, 'RENEW_EXPIRED_TOO_LATE'],
    ['a template without grace', { renewAfterExpiryDays: 0 }, 'RENEW_EXPIRED_NOT_ALLOWED'],
    ['a template without grace, long expired', { renewAfterExpiryDays: 0, notAfter: daysAgo(400) }, 'RENEW_EXPIRED_NOT_ALLOWED'],
    ['renewed once already with this key: the same answer', { later: [successor('bb02', 'key-new')] }, 'repeat'],
    ['renewed once already with another key', { later: [successor('bb02', 'key-other')] }, 'RENEW_EXPIRED_ALREADY_RENEWED'],
    ['renewed once, that renewal since revoked, same key', { later: [successor('bb02', 'key-new', 'revoked')] }, 'RENEW_EXPIRED_ALREADY_RENEWED'],
    ['a newer certificate that does not name it', { later: [{ serial: 'cc03', publicKeyHash: 'key-new', status: 'active', replaces: null }] }, 'RENEW_EXPIRED_ALREADY_RENEWED'],
    ['renewed once but too late now, same key', { later: [successor('bb02', 'key-new')], notAfter: daysAgo(31) }, 'RENEW_EXPIRED_TOO_LATE'],
  ])('%s', (_name, overrides, expected) => {
    const decision = decideRenewalAfterExpiry({ ...base, ...overrides });
    expect(decision.outcome === 'refused' ? decision.code : decision.outcome).toBe(expected);
  });

  it('says how long the certificate has been expired, to the hundredth of a day', () => {
    expect(decideRenewalAfterExpiry({ ...base, notAfter: new Date(now.getTime() - 2.5 * dayMs) }).expiredForDays).toBe(2.5);
    expect(decideRenewalAfterExpiry({ ...base, renewAfterExpiryDays: 0 }).expiredForDays).toBe(10);
  });

  it('names the certificate issued then when it answers a repeat', () => {
    expect(decideRenewalAfterExpiry({ ...base, later: [successor('bb02', 'key-other'), successor('bb03', 'key-new')] })).toMatchObject({ outcome: 'repeat', serial: 'bb03' });
  });
});
