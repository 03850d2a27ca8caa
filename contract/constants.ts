import type { RevocationReason } from '../core/index.ts';

/**
 * The values the API's answers and limits are made of, exported once for the routes (provisioning/api/),
 * the CLI (cli/) and the web console (console/src/). The console bundles this file, so it imports values
 * from nothing but core/operator-roles.ts, which imports nothing (the type import above is erased).
 */
export { operatorRoles, type OperatorRole } from '../core/operator-roles.ts';

/**
 * The RFC 5280 §5.3.1 reason names (core's revocationReasons) an operator may give for a revocation.
 * `certificateHold` and `removeFromCRL` are left out on purpose: a hold is what `suspend` is for, and
 * revocation here is final, so nothing is ever removed from the CRL. `cACompromise` and `aACompromise`
 * concern authorities, not the leaves this revokes.
 */
export const operatorRevocationReasons = ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn'] as const satisfies readonly RevocationReason[];
export type OperatorRevocationReason = (typeof operatorRevocationReasons)[number];

export const identityKinds = ['device', 'service'] as const;
export const deviceStatuses = ['active', 'suspended', 'revoked'] as const;
export const certificateStatuses = ['active', 'superseded', 'revoked'] as const;
export const sessionKinds = ['device', 'claim'] as const;
export const auditResults = ['ok', 'refused'] as const;
export const claimKinds = ['claim-certificate', 'manufacturer-ca'] as const;

/** Every list answers in pages of `limit` items (`?limit=`, a digit string: the API does not coerce types). */
export const listLimit = { min: 1, max: 1000, default: 100 } as const;

/** A free-text note for the audit trail (suspend, resume): longer ones are refused. */
export const statusNoteMaxLength = 256;

/** A template's traffic limits (README "Flow control and admission limits"): a positive integer up to this. */
export const templateLimitMax = 1_000_000_000;
