import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { FleetgateError } from '../../core/index.ts';

export type OperatorRole = 'admin' | 'operator' | 'station' | 'viewer';

export interface Operator {
  /** For audit entries: `operator:<name>`. */
  readonly actor: string;
  readonly role: OperatorRole;
}

export interface OperatorAuth {
  authenticate(request: FastifyRequest): Promise<Operator>;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Bearer-token authentication with the bootstrap token from `admin.token` (role admin). Compared as
 * SHA-256 digests with timingSafeEqual, so neither the token's length nor its prefix leaks through timing.
 */
export function bootstrapTokenAuth(adminToken: string): OperatorAuth {
  const expected = digest(adminToken);
  return {
    async authenticate(request) {
      const header = request.headers.authorization;
      const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
      if (!match) throw new FleetgateError('API_UNAUTHENTICATED');
      if (!timingSafeEqual(digest(match[1] ?? ''), expected)) throw new FleetgateError('API_UNAUTHENTICATED', { detail: { reason: 'unknown token' } });
      return { actor: 'operator:admin', role: 'admin' };
    },
  };
}

/** preHandler-style guard: who may call a route. */
export async function requireRole(auth: OperatorAuth, request: FastifyRequest, roles: readonly OperatorRole[]): Promise<Operator> {
  const operator = await auth.authenticate(request);
  if (!roles.includes(operator.role)) throw new FleetgateError('API_FORBIDDEN', { detail: { role: operator.role, needs: roles } });
  return operator;
}
