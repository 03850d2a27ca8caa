import { FleetgateError, isValidDeviceId } from '../core/index.ts';
import type { AuditInput, Registry } from '../registry/index.ts';

const audited = new WeakSet<object>();

/** True once a refusal has its audit entry, so the API's error handler does not record it twice. */
export function isAudited(error: unknown): boolean {
  return typeof error === 'object' && error !== null && audited.has(error);
}

/**
 * Runs a use-case and records its refusal: every error becomes an audit entry with its code (INTERNAL for
 * anything unexpected) before it is rethrown. Successful outcomes are audited by the use-case itself,
 * inside its own transaction.
 */
export async function auditRefusals<T>(registry: Registry, context: Omit<AuditInput, 'result' | 'code'>, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const fleetgateError = error instanceof FleetgateError ? error : undefined;
    // The device a refusal concerns may only become known inside the use-case (e.g. the CSR's CN).
    const idFromError = fleetgateError?.detail?.id;
    const deviceId = context.deviceId ?? (isValidDeviceId(idFromError) ? idFromError : undefined);
    await registry.appendAudit({
      ...context,
      ...(deviceId === undefined ? {} : { deviceId }),
      result: 'refused',
      code: fleetgateError?.code ?? 'INTERNAL',
      detail: { ...context.detail, ...(fleetgateError?.detail ?? {}) },
    });
    if (typeof error === 'object' && error !== null) audited.add(error);
    throw error;
  }
}
