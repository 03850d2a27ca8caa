import { FleetgateError } from '../core/index.ts';
import type { AuditInput, Registry } from '../registry/index.ts';

/**
 * Runs a use-case and records its refusal: every FleetgateError becomes an audit entry with its code before
 * it is rethrown. Successful outcomes are audited by the use-case itself, inside its own transaction.
 */
export async function auditRefusals<T>(registry: Registry, context: Omit<AuditInput, 'result' | 'code'>, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const fleetgateError = error instanceof FleetgateError ? error : undefined;
    await registry.appendAudit({
      ...context,
      result: 'refused',
      code: fleetgateError?.code ?? 'INTERNAL',
      detail: { ...context.detail, ...(fleetgateError?.detail ?? {}) },
    });
    throw error;
  }
}
