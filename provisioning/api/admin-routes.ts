import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { adminSchemas as schemas, type Claim, listLimit, type PageQuery, type PutTemplate, type Template } from '../../contract/index.ts';
import { type Clock, type EventBus, FleetgateError, type TemplateLimits } from '../../core/index.ts';
import type { ClaimRecord, Registry, TemplateRecord } from '../../registry/index.ts';
import type { CertificateAuthorities } from '../certificate-authorities.ts';
import { createClaim } from '../create-claim.ts';
import { registerClaimIssuer } from '../register-claim-issuer.ts';
import { type OperatorAuth, routeGuard } from './operator-auth.ts';

export interface AdminRouteDeps {
  readonly registry: Registry;
  readonly auth: OperatorAuth;
  /** The active claim CA signs claim certificates (POST /v1/claims). */
  readonly authorities: Pick<CertificateAuthorities, 'issuer' | 'rootsPem'>;
  readonly clock: Clock;
  readonly events: EventBus;
}

const claimJson = (c: ClaimRecord): Claim => ({
  claimId: c.id,
  template: c.template,
  kind: c.issuerPem === null ? 'claim-certificate' : 'manufacturer-ca',
  maxUses: c.maxUses,
  uses: c.uses,
  status: c.status,
  expiresAt: c.expiresAt.toISOString(),
  createdAt: c.createdAt.toISOString(),
});

/** A limit set to a positive integer is stored; null removes it (the gateway default applies again). */
function mergeLimits(current: TemplateLimits, patch: PutTemplate['limits']): TemplateLimits {
  const merged: Record<string, number> = { ...current };
  for (const [name, value] of Object.entries(patch ?? {})) {
    if (value === null || value === undefined) delete merged[name];
    else merged[name] = value;
  }
  return merged;
}

const templateJson = (t: TemplateRecord): Template => ({ ...t, createdAt: t.createdAt.toISOString(), updatedAt: t.updatedAt.toISOString() });

/**
 * One page of a list the registry returns whole, in its own order (templates by name, claims oldest first):
 * both stay small (a template per product line, a claim per factory batch) and neither is ever deleted, so
 * the key of the last item is a stable cursor. An `after` that names nothing is refused rather than
 * silently restarting the list.
 */
function pageOf<T, J>(all: readonly T[], keyOf: (item: T) => string, query: PageQuery, toJson: (item: T) => J): { items: J[]; next: string | null } {
  const limit = query.limit === undefined ? listLimit.default : Number(query.limit);
  if (limit < listLimit.min || limit > listLimit.max) throw new FleetgateError('REQUEST_INVALID', { message: `limit must be between ${listLimit.min} and ${listLimit.max}.` });
  let start = 0;
  if (query.after !== undefined) {
    const at = all.findIndex((item) => keyOf(item) === query.after);
    if (at < 0) throw new FleetgateError('REQUEST_INVALID', { message: `after: ${query.after} is not in the list; pass the \`next\` of the previous page.` });
    start = at + 1;
  }
  const items = all.slice(start, start + limit);
  const last = items.at(-1);
  return { items: items.map(toJson), next: start + limit < all.length && last !== undefined ? keyOf(last) : null };
}

/** Factory and fleet administration: templates, claims, allow-lists (schemas: contract/admin.ts). */
export function registerAdminRoutes(fastify: FastifyInstance, deps: AdminRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { registry, auth } = deps;
  // Authentication and role first, in onRequest: without the right credentials a caller learns only 401/403.
  const { allow, operatorOf } = routeGuard(auth);

  app.get(
    '/v1/templates',
    { onRequest: allow(['admin', 'operator', 'station', 'viewer']), schema: schemas.listTemplates },
    async (request) => pageOf(await registry.listTemplates(), (t) => t.name, request.query, templateJson),
  );

  app.post(
    '/v1/templates',
    { onRequest: allow(['admin']), schema: schemas.putTemplate },
    async (request, reply) => {
      const operator = operatorOf(request);
      const current = await registry.getTemplate(request.body.name);
      const base = current ?? (await registry.getTemplate('default'));
      if (base === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: 'default' } });
      const template = await registry.putTemplate(
        {
          name: request.body.name,
          policy: request.body.policy ?? base.policy,
          validityDays: request.body.validityDays ?? base.validityDays,
          keyTypes: request.body.keyTypes ?? base.keyTypes,
          requireAllowlist: request.body.requireAllowlist ?? (current?.requireAllowlist ?? false),
          allowReenroll: request.body.allowReenroll ?? (current?.allowReenroll ?? false),
          renewAfterExpiryDays: request.body.renewAfterExpiryDays ?? (current?.renewAfterExpiryDays ?? 0),
          limits: mergeLimits(current?.limits ?? {}, request.body.limits),
        },
        { actor: operator.actor, action: 'template.put', result: 'ok', detail: { template: request.body.name } },
      );
      // After the write, as for policies: brokers re-read the sessions of the template's devices.
      await deps.events.publish({ type: 'template.changed', template: template.name });
      return reply.status(201).send(templateJson(template));
    },
  );

  app.post(
    '/v1/templates/:name/allowlist',
    {
      onRequest: allow(['admin', 'station']),
      schema: schemas.importAllowlist,
      bodyLimit: 8 * 1024 * 1024,
    },
    async (request) => {
      const operator = operatorOf(request);
      return registry.importAllowlist(request.params.name, request.body.serials, { actor: operator.actor, action: 'allowlist.import', result: 'ok' });
    },
  );

  app.post(
    '/v1/claims',
    { onRequest: allow(['admin', 'station']), schema: schemas.createClaim },
    async (request, reply) => {
      const operator = operatorOf(request);
      const created = await createClaim(
        { registry, authorities: deps.authorities, clock: deps.clock },
        { template: request.body.template, maxUses: request.body.maxUses ?? null, ...(request.body.expiresInSeconds ? { expiresInSeconds: request.body.expiresInSeconds } : {}), actor: operator.actor },
      );
      // The key is in this one answer only; make sure no proxy or client keeps a copy.
      reply.header('cache-control', 'no-store');
      return reply.status(201).send({
        claimId: created.claim.id,
        template: created.claim.template,
        maxUses: created.claim.maxUses,
        expiresAt: created.claim.expiresAt.toISOString(),
        certificate: created.certificate,
        privateKey: created.privateKey,
        ca: created.ca,
      });
    },
  );

  app.get(
    '/v1/claims',
    { onRequest: allow(['admin', 'operator', 'station', 'viewer']), schema: schemas.listClaims },
    async (request) => pageOf(await registry.listClaims(), (c) => c.id, request.query, claimJson),
  );

  app.post(
    '/v1/claims/:id/revoke',
    { onRequest: allow(['admin', 'operator', 'station']), schema: schemas.revokeClaim },
    async (request) => {
      const operator = operatorOf(request);
      const claim = await registry.revokeClaim(request.params.id, { actor: operator.actor, action: 'claim.revoke', result: 'ok' });
      await deps.events.publish({ type: 'claim.revoked', claimId: claim.id, certificateSerial: claim.certificateSerial });
      if (claim.issuerPem !== null) await deps.events.publish({ type: 'trust.changed' });
      return claimJson(claim);
    },
  );

  app.post(
    '/v1/claim-issuers',
    { onRequest: allow(['admin']), schema: schemas.registerClaimIssuer },
    async (request, reply) => {
      const operator = operatorOf(request);
      const claim = await registerClaimIssuer({ registry, events: deps.events, clock: deps.clock }, { ...request.body, actor: operator.actor });
      return reply.status(201).send(claimJson(claim));
    },
  );
}
