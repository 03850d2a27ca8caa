import { assertAttributes, assertDeviceId, type DeviceAttributes, type ErrorCode, FleetgateError } from '../core/index.ts';
import type { StoredAuditFields } from './audit-chain.ts';
import type { AllowlistEntry, AuditEntry, AuditResult } from './registry-port.ts';
import { operatorRoles } from './registry-port.ts';

/**
 * Checks and shapes of what the registry stores and returns, so that SQLite and PostgreSQL refuse the same
 * input with the same code and hand back records of the same shape.
 */

const defaultLimit = 100;
const maxLimit = 1_000;

/** Page sizes: 100 by default, never more than 1000. */
export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || Number.isNaN(limit)) return defaultLimit;
  return Math.min(maxLimit, Math.max(1, Math.trunc(limit)));
}

const operatorTokenName = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function assertOperatorToken(name: string, role: string, tokenHash: string): void {
  const problems: string[] = [];
  if (!operatorTokenName.test(name)) problems.push('name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$');
  // The bootstrap token acts as operator:admin; a stored token of that name would be indistinguishable in the audit trail.
  if (name.toLowerCase() === 'admin') problems.push('the name admin is reserved for the bootstrap token');
  if (!(operatorRoles as readonly string[]).includes(role)) problems.push(`role must be one of ${operatorRoles.join(', ')}`);
  if (!/^[0-9a-f]{64}$/.test(tokenHash)) problems.push('tokenHash must be a lower-case hex SHA-256');
  if (problems.length > 0) throw new FleetgateError('REQUEST_INVALID', { message: `The operator token is not valid: ${problems.join('; ')}.`, detail: { name, problems } });
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

/**
 * Allow-list entries checked and shaped before a write, so a bad one refuses the whole import. `attributes`
 * is undefined for an entry that carries none, which leaves a listed serial's attributes as they are. A
 * serial given twice keeps its last entry.
 */
export function allowlistRows(entries: readonly AllowlistEntry[]): { serial: string; attributes: DeviceAttributes | undefined }[] {
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
