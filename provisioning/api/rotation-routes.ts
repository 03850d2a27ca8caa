import { randomBytes } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { listLimit, type RotationCampaign, rotationRate, rotationSchemas as schemas } from '../../contract/index.ts';
import { FleetgateError, parseRotationSelector, type RotationCampaignAction } from '../../core/index.ts';
import type { Registry, RotationCampaignRecord } from '../../registry/index.ts';
import { auditRefusals } from '../audited.ts';
import type { RotationScheduler } from '../rotation-scheduler.ts';
import { type OperatorAuth, type OperatorRole, routeGuard } from './operator-auth.ts';

export interface RotationRouteDeps {
  readonly registry: Registry;
  readonly auth: OperatorAuth;
  readonly scheduler: RotationScheduler;
}

const readers: readonly OperatorRole[] = ['admin', 'operator', 'viewer'];
const actors: readonly OperatorRole[] = ['admin', 'operator'];

const campaignJson = (c: RotationCampaignRecord): RotationCampaign => ({
  ...c,
  createdAt: c.createdAt.toISOString(),
  updatedAt: c.updatedAt.toISOString(),
  endedAt: c.endedAt === null ? null : c.endedAt.toISOString(),
});

/** `rot-` and 12 hex digits: short enough to type, random enough never to collide. */
const newCampaignId = () => `rot-${randomBytes(6).toString('hex')}`;

/**
 * Rotation campaigns (README "Rotation campaigns"; schemas in contract/rotation.ts): start, list, read,
 * pause, resume, close. Each change and each refusal is audited; the scheduler (provisioning/rotation-scheduler.ts)
 * does the notifying.
 */
export function registerRotationRoutes(fastify: FastifyInstance, deps: RotationRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { registry, scheduler } = deps;
  const { allow, operatorOf } = routeGuard(deps.auth);

  app.post('/v1/rotations', { onRequest: allow(actors), schema: schemas.start, bodyLimit: 8 * 1024 * 1024 }, async (request, reply) => {
    const operator = operatorOf(request);
    const { select, ids } = request.body;
    const ratePerSecond = request.body.ratePerSecond ?? rotationRate.default;
    const context = { actor: operator.actor, action: 'rotation.start', detail: { select: select.slice(0, 200), ids: ids?.length ?? 0, ratePerSecond } };
    const campaign = await auditRefusals(registry, context, async () =>
      registry.createRotationCampaign({ id: newCampaignId(), selector: parseRotationSelector(select, ids), ratePerSecond, audit: { ...context, result: 'ok' } }),
    );
    scheduler.follow(campaign.id);
    return reply.status(201).send(campaignJson(campaign));
  });

  app.get('/v1/rotations', { onRequest: allow(readers), schema: schemas.list }, async () => ({ items: (await registry.listRotationCampaigns()).map(campaignJson), next: null }));

  app.get('/v1/rotations/:id', { onRequest: allow(readers), schema: schemas.get }, async (request) => {
    const campaign = await registry.getRotationCampaign(request.params.id);
    if (campaign === undefined) throw new FleetgateError('ROTATION_CAMPAIGN_NOT_FOUND', { detail: { campaignId: request.params.id } });
    return campaignJson(campaign);
  });

  app.get('/v1/rotations/:id/devices', { onRequest: allow(readers), schema: schemas.devices }, async (request) => {
    const { id } = request.params;
    if ((await registry.getRotationCampaign(id)) === undefined) throw new FleetgateError('ROTATION_CAMPAIGN_NOT_FOUND', { detail: { campaignId: id } });
    const limit = request.query.limit === undefined ? listLimit.default : Number(request.query.limit);
    if (limit < listLimit.min || limit > listLimit.max) throw new FleetgateError('REQUEST_INVALID', { message: `limit must be between ${listLimit.min} and ${listLimit.max}.` });
    const rows = await registry.listRotationDevices(id, {
      limit,
      ...(request.query.outcome ? { outcome: request.query.outcome } : {}),
      ...(request.query.after ? { after: request.query.after } : {}),
    });
    return {
      items: rows.map((row) => ({ deviceId: row.deviceId, outcome: row.outcome, dispatchedAt: row.dispatchedAt?.toISOString() ?? null, notifiedAt: row.notifiedAt?.toISOString() ?? null })),
      next: rows.length === limit ? (rows.at(-1)?.deviceId ?? null) : null,
    };
  });

  const change = (action: RotationCampaignAction) =>
    app.post(`/v1/rotations/:id/${action}`, { onRequest: allow(actors), schema: schemas[action] }, async (request) => {
      const operator = operatorOf(request);
      const context = { actor: operator.actor, action: `rotation.${action}`, detail: { campaignId: request.params.id.slice(0, 128) } };
      const campaign = await auditRefusals(registry, context, () => registry.changeRotationCampaign(request.params.id, action, { ...context, result: 'ok' }));
      if (campaign.state === 'running') scheduler.follow(campaign.id);
      return campaignJson(campaign);
    });
  change('pause');
  change('resume');
  change('close');
}
