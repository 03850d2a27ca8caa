import type { ErrorCode } from './errors.ts';
import { FleetgateError } from './errors.ts';
import { allowedKeyTypes } from './pki/csr.ts';
import { assertAttributes, assertDeviceId, type DeviceAttributes } from './device-id.ts';

/**
 * The rules the registry applies to what it stores, as pure answers over rows already read: the registry
 * (registry/sql-registry.ts) reads the rows inside its write transaction, asks here, and writes or throws.
 * Each rule exists once, whatever the database (README "Enrollment and renewal", "Revocation").
 */

/** A refusal as the catalogue names it, with what the audit trail and the error's detail should say. */
export interface RuleRefusal {
  readonly code: ErrorCode;
  readonly detail: Readonly<Record<string, unknown>>;
}

/** Throws a refusal as its coded error; does nothing for undefined. */
export function refuseIf(refusal: RuleRefusal | undefined): void {
  if (refusal !== undefined) throw new FleetgateError(refusal.code, { detail: refusal.detail });
}

/** The policy an identity's sessions get: its own, else its template's; null when neither exists (template gone). */
export function effectivePolicyName(identity: { readonly policy: string | null }, template: { readonly policy: string } | undefined): string | null {
  return identity.policy ?? template?.policy ?? null;
}

/**
 * A public key belongs to one identity for good: another identity holding any certificate for it (revoked
 * ones too: that key may be compromised) refuses the binding. The same identity may present it again (a
 * lost reply, a renewal with the same key).
 */
export function keyBindingRefusal(publicKeyHash: string, otherHolder: string | undefined): RuleRefusal | undefined {
  return otherHolder === undefined ? undefined : { code: 'PKI_PUBLIC_KEY_IN_USE', detail: { publicKeyHash, boundTo: otherHolder } };
}

export interface CertificateRecordingFacts {
  readonly id: string;
  /** The identity registered under `id`, if any. */
  readonly existing: { readonly status: string } | undefined;
  /** The caller registers a new identity and must not add to an existing one. */
  readonly mustBeNew: boolean;
  /** For a new identity: whether its template and (when set) its own policy exist. */
  readonly template: { readonly name: string; readonly exists: boolean };
  readonly policy: { readonly name: string; readonly exists: boolean } | null;
  /** For a renewal: the certificate it replaces, as found by serial (`found` undefined when unknown). */
  readonly replaces: {
    readonly serial: string;
    readonly found: { readonly deviceId: string; readonly status: string } | undefined;
    /**
     * A renewal after expiry (core/renewal-after-expiry.ts): how many certificates already name this one in
     * `replaces`; absent for an ordinary renewal, which may be repeated with other keys.
     */
    readonly successors?: number;
  } | null;
  readonly publicKeyHash: string;
  /** Another identity holding a certificate for the same key. */
  readonly keyHolder: string | undefined;
}

/**
 * Whether a certificate may be recorded for an identity outside claim enrollment (an operator's
 * registration, a renewal), checked in a fixed order: a revoked identity never gets another certificate,
 * a renewal replaces an active certificate of the same identity, and the key is bound to nobody else.
 */
export function certificateRecordingRefusal(facts: CertificateRecordingFacts): RuleRefusal | undefined {
  const { id, existing } = facts;
  if (existing !== undefined) {
    if (facts.mustBeNew) return { code: 'DEVICE_EXISTS', detail: { id } };
    if (existing.status === 'revoked') return { code: 'AUTH_DEVICE_REVOKED', detail: { id } };
  } else {
    if (!facts.template.exists) return { code: 'TEMPLATE_NOT_FOUND', detail: { template: facts.template.name } };
    if (facts.policy !== null && !facts.policy.exists) return { code: 'POLICY_NOT_FOUND', detail: { policy: facts.policy.name } };
  }
  const replaces = facts.replaces;
  if (replaces !== null) {
    if (replaces.found === undefined || replaces.found.deviceId !== id) return { code: 'CERT_NOT_FOUND', detail: { serial: replaces.serial } };
    if (replaces.found.status !== 'active') return { code: 'AUTH_CERT_REVOKED', detail: { serial: replaces.serial, status: replaces.found.status } };
    // An expired certificate renews once: the check before signing is repeated here, where racing requests are serialised.
    if (replaces.successors !== undefined && replaces.successors > 0) return { code: 'RENEW_EXPIRED_ALREADY_RENEWED', detail: { serial: replaces.serial, successors: replaces.successors } };
  }
  return keyBindingRefusal(facts.publicKeyHash, facts.keyHolder);
}

/**
 * A status change: `write` it, leave it `unchanged` (revoking a revoked identity again: the first reason
 * and date stand, the request is still audited), or refuse. Revocation is final: a revoked identity is
 * never suspended or resumed.
 */
export function decideStatusChange(id: string, current: string, requested: string): { readonly outcome: 'write' | 'unchanged' } | { readonly outcome: 'refused'; readonly refusal: RuleRefusal } {
  if (current !== 'revoked') return { outcome: 'write' };
  if (requested === 'revoked') return { outcome: 'unchanged' };
  return { outcome: 'refused', refusal: { code: 'AUTH_DEVICE_REVOKED', detail: { id, requested } } };
}

/** Longest grace after expiry a template may give (README "Renewal after expiry"): ten years, as for validityDays. */
export const maxRenewAfterExpiryDays = 3650;

/**
 * A template issues certificates for at least a day, to keys of types fleetgate knows (core allowedKeyTypes),
 * and gives an expired certificate 0 to 3650 days to renew (0: never).
 */
export function assertTemplate(template: { readonly name: string; readonly validityDays: number; readonly keyTypes: readonly string[]; readonly renewAfterExpiryDays?: number }): void {
  const problems: string[] = [];
  if (!Number.isInteger(template.validityDays) || template.validityDays < 1) problems.push('validityDays must be a positive integer');
  const grace = template.renewAfterExpiryDays ?? 0;
  if (!Number.isInteger(grace) || grace < 0 || grace > maxRenewAfterExpiryDays) problems.push(`renewAfterExpiryDays must be an integer from 0 to ${maxRenewAfterExpiryDays}`);
  if (!Array.isArray(template.keyTypes) || template.keyTypes.length === 0) problems.push('keyTypes must list at least one key type');
  const unknown = (template.keyTypes ?? []).filter((keyType) => !(allowedKeyTypes as readonly string[]).includes(keyType));
  if (unknown.length > 0) problems.push(`unknown key types: ${unknown.join(', ')}`);
  if (problems.length > 0) throw new FleetgateError('TEMPLATE_INVALID', { detail: { template: template.name, problems } });
}

const operatorTokenName = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A personal operator token as it may be stored: a plain name other than `admin`, a known role, a SHA-256. */
export function assertOperatorToken(name: string, role: string, tokenHash: string, roles: readonly string[]): void {
  const problems: string[] = [];
  if (!operatorTokenName.test(name)) problems.push('name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$');
  // The bootstrap token acts as operator:admin; a stored token of that name would be indistinguishable in the audit trail.
  if (name.toLowerCase() === 'admin') problems.push('the name admin is reserved for the bootstrap token');
  if (!roles.includes(role)) problems.push(`role must be one of ${roles.join(', ')}`);
  if (!/^[0-9a-f]{64}$/.test(tokenHash)) problems.push('tokenHash must be a lower-case hex SHA-256');
  if (problems.length > 0) throw new FleetgateError('REQUEST_INVALID', { message: `The operator token is not valid: ${problems.join('; ')}.`, detail: { name, problems } });
}

/**
 * Allow-list entries checked and shaped before a write, so a bad one refuses the whole import. `attributes`
 * is undefined for an entry that carries none, which leaves a listed serial's attributes as they are. A
 * serial given twice keeps its last entry.
 */
export function allowlistRows(entries: readonly (string | { readonly serial: string; readonly attributes?: Readonly<Record<string, string>> })[]): { serial: string; attributes: DeviceAttributes | undefined }[] {
  const rows = new Map<string, DeviceAttributes | undefined>();
  for (const entry of entries) {
    if (typeof entry === 'string') {
      const serial = assertDeviceId(entry);
      rows.set(serial, rows.get(serial));
    } else {
      rows.set(assertDeviceId(entry.serial), entry.attributes === undefined ? rows.get(entry.serial) : assertAttributes(entry.attributes));
    }
  }
  return [...rows].map(([serial, attributes]) => ({ serial, attributes }));
}
