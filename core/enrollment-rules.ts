import type { ErrorCode } from './errors.ts';
import { FleetgateError } from './errors.ts';

/**
 * The one answer to "may this claim enroll this serial now?" (README "Enrollment and renewal"). The
 * provisioning use-case asks it before signing, to refuse cheaply; the registry asks it again
 * inside its write transaction with the rows it just read, where the answer is final. Both pass facts, this
 * decides: the rule lives here once, never in the registry.
 */

/** What a claim row says about itself. */
export interface ClaimFacts {
  readonly template: string;
  readonly status: string;
  readonly expiresAt: Date;
  readonly uses: number;
  readonly maxUses: number | null;
}

/** The identity already registered under the serial. */
export interface IdentityFacts {
  readonly kind: string;
  readonly status: string;
  readonly template: string;
  /** A policy an operator set on this identity instead of its template's (null: the template's). */
  readonly policy: string | null;
}

export interface EnrollmentFacts {
  readonly claim: ClaimFacts;
  /** The claim template's rules. */
  readonly template: { readonly requireAllowlist: boolean; readonly allowReenroll: boolean };
  /** Whether the serial is on the claim template's allow-list (need only be looked up when one is required). */
  readonly serialAllowed: boolean;
  /** The identity registered under the serial, if any. */
  readonly existing: IdentityFacts | undefined;
  /** Whether `existing` already holds an active certificate for the CSR's public key (a lost reply). */
  readonly holdsSameKey: boolean;
  readonly now: Date;
}

export type EnrollmentDecision =
  /** A new device of the claim template; one claim use. */
  | { readonly outcome: 'enroll' }
  /** Factory reset: the device's certificates are superseded by the new one; one claim use. */
  | { readonly outcome: 'reenroll' }
  /** The same request again: answer with the certificate it already holds; nothing is written. */
  | { readonly outcome: 'repeat' }
  | { readonly outcome: 'refused'; readonly code: ErrorCode; readonly reason: string };

const refused = (code: ErrorCode, reason: string): EnrollmentDecision => ({ outcome: 'refused', code, reason });

/** Whether a claim can be used at all at `now`: undefined when it can, else the refusal. */
export function claimRefusal(claim: ClaimFacts, now: Date): { code: ErrorCode; reason: string } | undefined {
  if (claim.status !== 'active') return { code: 'ENROLL_CLAIM_REVOKED', reason: `claim ${claim.status}` };
  if (claim.expiresAt.getTime() <= now.getTime()) return { code: 'ENROLL_CLAIM_EXPIRED', reason: 'claim expired' };
  return undefined;
}

/**
 * Checks in a fixed order. A claim speaks only for devices of its own template: it never touches a
 * service (which reads all of `devices/#` under `backend`), an operator identity or a device of another
 * template, not even to hand back a certificate that identity already holds. Of its own devices, only an
 * active one may be re-enrolled, and only if the template allows it; a suspended or revoked device stays
 * as an operator left it. A retry of the same (serial, key) is answered before the use limit, because it
 * uses nothing.
 */
export function decideEnrollment(facts: EnrollmentFacts): EnrollmentDecision {
  const { claim, existing } = facts;
  const unusable = claimRefusal(claim, facts.now);
  if (unusable !== undefined) return refused(unusable.code, unusable.reason);

  if (existing !== undefined) {
    if (existing.kind !== 'device') return refused('ENROLL_IDENTITY_NOT_REENROLLABLE', `the serial names a ${existing.kind}, not a device`);
    if (existing.template !== claim.template) return refused('ENROLL_IDENTITY_NOT_REENROLLABLE', `the device belongs to template ${existing.template}, the claim to ${claim.template}`);
    if (existing.status === 'revoked') return refused('AUTH_DEVICE_REVOKED', 'the device is revoked');
    if (existing.status !== 'active') return refused('AUTH_DEVICE_SUSPENDED', `the device is ${existing.status}`);
    if (facts.holdsSameKey) return { outcome: 'repeat' };
    // An operator gave this device a policy of its own (POST /v1/devices): a claim of its template must not
    // hand that wider policy to a new key. Re-key such a device through the admin API.
    if (existing.policy !== null) return refused('ENROLL_IDENTITY_NOT_REENROLLABLE', `the device has its own policy ${existing.policy}, set by an operator`);
    if (!facts.template.allowReenroll) return refused('ENROLL_CLONE_SUSPECTED', 'enrolled with another key and the template does not allow re-enrollment');
  }
  if (claim.maxUses !== null && claim.uses >= claim.maxUses) return refused('ENROLL_CLAIM_EXHAUSTED', `claim used ${claim.uses} of ${claim.maxUses} times`);
  if (facts.template.requireAllowlist && !facts.serialAllowed) return refused('ENROLL_SERIAL_NOT_ALLOWED', 'serial not on the template allow-list');
  return existing === undefined ? { outcome: 'enroll' } : { outcome: 'reenroll' };
}

/** The decision as the caller acts on it: a refusal is thrown as its coded error. */
export function assertEnrollment(facts: EnrollmentFacts, detail: Record<string, unknown> = {}): Exclude<EnrollmentDecision, { outcome: 'refused' }> {
  const decision = decideEnrollment(facts);
  if (decision.outcome === 'refused') throw new FleetgateError(decision.code, { detail: { ...detail, reason: decision.reason } });
  return decision;
}
