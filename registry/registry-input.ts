import type { ErrorCode } from '../core/index.ts';
import type { StoredAuditFields } from './audit-chain.ts';
import type { AuditEntry, AuditResult } from './registry-port.ts';

/** Page sizes and audit entries as the registry hands them back, whatever the database. */

const defaultLimit = 100;
const maxLimit = 1_000;

/** Page sizes: 100 by default, never more than 1000. */
export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || Number.isNaN(limit)) return defaultLimit;
  return Math.min(maxLimit, Math.max(1, Math.trunc(limit)));
}

/**
 * An audit entry as stored (the fields its hash covers), as the port returns it: optional fields are left
 * out rather than set to undefined, so entries compare and serialise cleanly; `detail` is parsed from the
 * text stored (JSON drops undefined and functions).
 */
export function storedAuditEntry(fields: StoredAuditFields): AuditEntry {
  return {
    id: fields.id,
    at: new Date(fields.at),
    actor: fields.actor,
    action: fields.action,
    result: fields.result as AuditResult,
    ...(fields.code === null ? {} : { code: fields.code as ErrorCode }),
    ...(fields.deviceId === null ? {} : { deviceId: fields.deviceId }),
    ...(fields.detail === null ? {} : { detail: JSON.parse(fields.detail) as Record<string, unknown> }),
  };
}
