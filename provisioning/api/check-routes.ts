import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { FleetCheckStatus } from '../../core/index.ts';
import { checkSchemas } from '../../contract/index.ts';
import type { FleetChecks } from '../fleet-check-collector.ts';
import { type OperatorAuth, type OperatorRole, routeGuard } from './operator-auth.ts';

export interface CheckRouteDeps {
  readonly auth: OperatorAuth;
  readonly checks: FleetChecks;
}

// Reading the fleet's health is what viewers are for (docs/THREAT-MODEL.md R6).
const readers: readonly OperatorRole[] = ['admin', 'operator', 'viewer'];
const rank: Record<FleetCheckStatus, number> = { pass: 0, warn: 1, fail: 2 };

/** GET /v1/checks (README "Fleet health checks"): the same results as `fleetgate check`, the console and Prometheus. */
export function registerCheckRoutes(fastify: FastifyInstance, deps: CheckRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { allow } = routeGuard(deps.auth);
  app.get('/v1/checks', { onRequest: allow(readers), schema: checkSchemas.listChecks }, async (request) => {
    const { id, fresh } = request.query;
    const run = await deps.checks.run({ ...(id === undefined ? {} : { only: [id] }), fresh: fresh === 'true' });
    const status = run.results.reduce<FleetCheckStatus>((worst, r) => (rank[r.status] > rank[worst] ? r.status : worst), 'pass');
    return { checkedAt: run.checkedAt.toISOString(), status, items: run.results.map((r) => ({ ...r, findings: [...r.findings] })) };
  });
}
