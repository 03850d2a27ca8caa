import { operatorRevocationReasons, type OperatorRevocationReason, statusNoteMaxLength } from '../contract/index.ts';
import { assertDeviceId, type EventBus, FleetgateError, isValidDeviceId } from '../core/index.ts';
import type { DeviceRecord, DeviceStatus, Registry } from '../registry/index.ts';
import { auditRefusals } from './audited.ts';

// The reasons an operator may give are the API's (contract/constants.ts): the CLI and the console offer the same list.
export { operatorRevocationReasons, type OperatorRevocationReason } from '../contract/index.ts';

export type StatusAction = 'revoke' | 'suspend' | 'resume';

export interface ChangeStatusRequest {
  /** Device id or service name. */
  readonly id: string;
  readonly action: StatusAction;
  /** revoke: an RFC 5280 reason name (required); suspend/resume: optional free text for the audit trail. */
  readonly reason?: string | null;
  /** `operator:<name>`, `cli`, … */
  readonly actor: string;
}

export interface ChangeStatusDeps {
  readonly registry: Registry;
  readonly events: EventBus;
}

const targetStatus: Record<StatusAction, DeviceStatus> = { revoke: 'revoked', suspend: 'suspended', resume: 'active' };

/**
 * Revoke, suspend or resume a device or service identity. The registry is written first (status, the
 * certificates for a revocation, and the audit entry, in one transaction), then the change is published on
 * the event bus so every broker closes the live session at once. In that order a broker that hears the
 * event and re-reads the registry never finds the old status; a lost event still leaves every new CONNECT
 * refused, since brokers check the registry on each one.
 *
 * Repeating a revoke is allowed and publishes again: it is how an operator retries a revocation whose event
 * failed to go out. Revocation is final: resuming or suspending a revoked identity is refused.
 */
export async function changeDeviceStatus(deps: ChangeStatusDeps, request: ChangeStatusRequest): Promise<DeviceRecord> {
  const { registry } = deps;
  const status = targetStatus[request.action];
  // An empty note is no note; an empty revocation reason is still refused below.
  const reason = request.reason === '' && status !== 'revoked' ? null : (request.reason ?? null);
  // One action name per operation, whatever the identity's kind, so "every revocation" is one audit query.
  const action = `device.${request.action}`;
  const updated = await auditRefusals(
    registry,
    {
      actor: request.actor,
      action,
      // Refusals are filed under the device too (an unknown id included), so `audit --device ID` shows them.
      ...(isValidDeviceId(request.id) ? { deviceId: request.id } : {}),
      detail: { id: String(request.id).slice(0, 128), ...(reason === null ? {} : { reason: String(reason).slice(0, statusNoteMaxLength) }) },
    },
    async () => {
      const id = assertDeviceId(request.id);
      if (status === 'revoked') assertRevocationReason(reason);
      else if (reason !== null) assertNote(reason);
      const current = await registry.getDevice(id);
      if (current === undefined) throw new FleetgateError('DEVICE_NOT_FOUND', { detail: { id } });
      if (current.status === 'revoked' && status !== 'revoked') throw revokedIsFinal(id, status);
      try {
        return await registry.setDeviceStatus({
          id,
          status,
          reason,
          audit: { actor: request.actor, action, result: 'ok', deviceId: id, detail: { kind: current.kind, from: current.status, to: status, ...(reason === null ? {} : { reason }) } },
        });
      } catch (error) {
        // The registry re-checks finality inside its transaction, where a concurrent revoke may have won.
        if (error instanceof FleetgateError && error.code === 'AUTH_DEVICE_REVOKED') throw revokedIsFinal(id, status, error);
        throw error;
      }
    },
  );
  // Wall-clock time, not the injected clock: brokers subtract it from their own Date.now() to measure
  // revocation-to-disconnect latency.
  const committedAt = Date.now();
  await deps.events.publish({
    type: 'device.status',
    deviceId: updated.id,
    status: updated.status,
    ...(updated.statusReason === null ? {} : { reason: updated.statusReason }),
    at: committedAt,
  });
  return updated;
}

export function isOperatorRevocationReason(value: unknown): value is OperatorRevocationReason {
  return typeof value === 'string' && (operatorRevocationReasons as readonly string[]).includes(value);
}

function assertRevocationReason(reason: string | null): asserts reason is OperatorRevocationReason {
  if (isOperatorRevocationReason(reason)) return;
  const hint = reason === 'certificateHold' || reason === 'removeFromCRL' ? ' A temporary hold is a suspension: use suspend and resume instead.' : '';
  throw new FleetgateError('REQUEST_INVALID', {
    message: `A revocation needs an RFC 5280 reason: one of ${operatorRevocationReasons.join(', ')}.${hint}`,
    detail: { reason: reason === null ? null : String(reason).slice(0, 64) },
  });
}

function assertNote(note: string): void {
  // The note lands in audit entries, logs and terminal tables: keep it one printable line.
  if (typeof note !== 'string' || note.length > statusNoteMaxLength || /[\u0000-\u001f\u007f]/.test(note)) {
    throw new FleetgateError('REQUEST_INVALID', { message: `The reason must be one line of at most ${statusNoteMaxLength} printable characters.` });
  }
}

function revokedIsFinal(id: string, requested: DeviceStatus, cause?: unknown): FleetgateError {
  return new FleetgateError('DEVICE_REVOKED_FINAL', {
    detail: { id, requested },
    ...(cause === undefined ? {} : { cause }),
  });
}
