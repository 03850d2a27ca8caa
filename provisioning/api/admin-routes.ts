import type { FastifyInstance } from 'fastify';
import { type CaCredential, type Clock, type EventBus, FleetgateError, type TemplateLimits } from '../../core/index.ts';
import type { AllowlistEntry, ClaimRecord, Registry, TemplateRecord } from '../../registry/index.ts';
import { createClaim } from '../create-claim.ts';
import { registerClaimIssuer } from '../register-claim-issuer.ts';
import { type OperatorAuth, routeGuard } from './operator-auth.ts';

export interface AdminRouteDeps {
  readonly registry: Registry;
  readonly auth: OperatorAuth;
  readonly claimCa: CaCredential;
  readonly rootPem: string;
  readonly clock: Clock;
  readonly events: EventBus;
}

const claimSchema = {
  type: 'object',
  properties: {
    claimId: { type: 'string' },
    template: { type: 'string' },
    kind: { type: 'string', enum: ['claim-certificate', 'manufacturer-ca'] },
    maxUses: { type: ['integer', 'null'] },
    uses: { type: 'integer' },
    status: { type: 'string' },
    expiresAt: { type: 'string', format: 'date-time' },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const;

const claimJson = (c: ClaimRecord) => ({
  claimId: c.id,
  template: c.template,
  kind: c.issuerPem === null ? 'claim-certificate' : 'manufacturer-ca',
  maxUses: c.maxUses,
  uses: c.uses,
  status: c.status,
  expiresAt: c.expiresAt.toISOString(),
  createdAt: c.createdAt.toISOString(),
});

const templateSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    policy: { type: 'string' },
    validityDays: { type: 'integer' },
    keyTypes: { type: 'array', items: { type: 'string' } },
    requireAllowlist: { type: 'boolean' },
    allowReenroll: { type: 'boolean' },
    limits: {
      type: 'object',
      properties: {
        publishPerSecond: { type: 'integer' },
        publishBytesPerSecond: { type: 'integer' },
        outboundQueueMessages: { type: 'integer' },
        outboundQueueBytes: { type: 'integer' },
      },
    },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const;

/** A limit set to a positive integer is stored; null removes it (the gateway default applies again). */
const limitSchema = { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000_000 } as const;
type LimitsPatch = { [K in keyof TemplateLimits]?: number | null };

function mergeLimits(current: TemplateLimits, patch: LimitsPatch | undefined): TemplateLimits {
  const merged: Record<string, number> = { ...current };
  for (const [name, value] of Object.entries(patch ?? {})) {
    if (value === null || value === undefined) delete merged[name];
    else merged[name] = value;
  }
  return merged;
}

const templateJson = (t: TemplateRecord) => ({ ...t, createdAt: t.createdAt.toISOString(), updatedAt: t.updatedAt.toISOString() });

interface PageQuery {
  after?: string;
  limit?: string;
}

// The same page shape as the fleet routes (provisioning/api/fleet-routes.ts): `{items, next}`, `next` passed
// back as `after`. Query values arrive as strings (the API does not coerce), so the limit is a digit string.
const pageQuery = (key: string) =>
  ({
    type: 'object',
    additionalProperties: false,
    properties: {
      after: { type: 'string', maxLength: 128, description: `the ${key} the previous page ended with (its \`next\`)` },
      limit: { type: 'string', pattern: '^[0-9]{1,4}$', description: '1 to 1000, default 100' },
    },
  }) as const;
const page = (items: object) => ({ type: 'object', properties: { items: { type: 'array', items }, next: { type: ['string', 'null'], description: 'pass as `after` for the next page' } } });

/**
 * One page of a list the registry returns whole, in its own order (templates by name, claims oldest first):
 * both stay small (a template per product line, a claim per factory batch) and neither is ever deleted, so
 * the key of the last item is a stable cursor. An `after` that names nothing is refused rather than
 * silently restarting the list.
 */
function pageOf<T, J>(all: readonly T[], keyOf: (item: T) => string, query: PageQuery, toJson: (item: T) => J): { items: J[]; next: string | null } {
  const limit = query.limit === undefined ? 100 : Number(query.limit);
  if (limit < 1 || limit > 1000) throw new FleetgateError('REQUEST_INVALID', { message: 'limit must be between 1 and 1000.' });
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

/** Factory and fleet administration: templates, claims, allow-lists. */
export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { registry, auth } = deps;
  const security = [{ bearer: [] }];
  // Authentication and role first, in onRequest: without the right credentials a caller learns only 401/403.
  const { allow, operatorOf } = routeGuard(auth);

  app.get<{ Querystring: PageQuery }>(
    '/v1/templates',
    {
      onRequest: allow(['admin', 'operator', 'station', 'viewer']),
      schema: { tags: ['admin'], summary: 'Registration templates, by name, one page at a time', security, querystring: pageQuery('name'), response: { 200: page(templateSchema) } },
    },
    async (request) => pageOf(await registry.listTemplates(), (t) => t.name, request.query, templateJson),
  );

  app.post<{ Body: { name: string; policy?: string; validityDays?: number; keyTypes?: string[]; requireAllowlist?: boolean; allowReenroll?: boolean; limits?: LimitsPatch } }>(
    '/v1/templates',
    {
      onRequest: allow(['admin']),
      schema: {
        tags: ['admin'],
        summary: 'Create or replace a registration template',
        security,
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
            policy: { type: 'string', maxLength: 128 },
            validityDays: { type: 'integer', minimum: 1, maximum: 3650 },
            keyTypes: { type: 'array', items: { type: 'string' }, minItems: 1 },
            requireAllowlist: { type: 'boolean' },
            allowReenroll: { type: 'boolean' },
            // Traffic limits of the template's devices, merged into the current ones (README "Flow control and admission limits").
            limits: {
              type: 'object',
              additionalProperties: false,
              properties: { publishPerSecond: limitSchema, publishBytesPerSecond: limitSchema, outboundQueueMessages: limitSchema, outboundQueueBytes: limitSchema },
            },
          },
        },
        response: { 201: templateSchema },
      },
    },
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
          limits: mergeLimits(current?.limits ?? {}, request.body.limits),
        },
        { actor: operator.actor, action: 'template.put', result: 'ok', detail: { template: request.body.name } },
      );
      // After the write, as for policies: brokers re-read the sessions of the template's devices.
      await deps.events.publish({ type: 'template.changed', template: template.name });
      return reply.status(201).send(templateJson(template));
    },
  );

  app.post<{ Params: { name: string }; Body: { serials: AllowlistEntry[] } }>(
    '/v1/templates/:name/allowlist',
    {
      onRequest: allow(['admin', 'station']),
      schema: {
        tags: ['admin'],
        summary: 'Add device serials to the template allow-list, each optionally with the attributes its device gets at enrollment',
        security,
        params: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
        body: {
          type: 'object',
          required: ['serials'],
          additionalProperties: false,
          properties: {
            serials: {
              type: 'array',
              maxItems: 100_000,
              // Attributes given here are trusted: they fill ${device.attributes.NAME} in policies (README "Enrollment and renewal").
              items: {
                anyOf: [
                  { type: 'string', maxLength: 128 },
                  {
                    type: 'object',
                    required: ['serial'],
                    additionalProperties: false,
                    properties: { serial: { type: 'string', maxLength: 128 }, attributes: { type: 'object', additionalProperties: { type: 'string' } } },
                  },
                ],
              },
            },
          },
        },
        response: { 200: { type: 'object', properties: { added: { type: 'integer' }, total: { type: 'integer' } } } },
      },
      bodyLimit: 8 * 1024 * 1024,
    },
    async (request) => {
      const operator = operatorOf(request);
      return registry.importAllowlist(request.params.name, request.body.serials, { actor: operator.actor, action: 'allowlist.import', result: 'ok' });
    },
  );

  app.post<{ Body: { template: string; maxUses?: number; expiresInSeconds?: number } }>(
    '/v1/claims',
    {
      onRequest: allow(['admin', 'station']),
      schema: {
        tags: ['admin'],
        summary: 'Issue a claim certificate and key for a factory batch',
        security,
        body: {
          type: 'object',
          required: ['template'],
          additionalProperties: false,
          properties: { template: { type: 'string', maxLength: 128 }, maxUses: { type: 'integer', minimum: 1 }, expiresInSeconds: { type: 'integer', minimum: 60 } },
        },
        response: {
          201: {
            type: 'object',
            properties: {
              claimId: { type: 'string' },
              template: { type: 'string' },
              maxUses: { type: ['integer', 'null'] },
              expiresAt: { type: 'string', format: 'date-time' },
              certificate: { type: 'string' },
              privateKey: { type: 'string' },
              ca: { type: 'string' },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const operator = operatorOf(request);
      const created = await createClaim(
        { registry, claimCa: deps.claimCa, rootPem: deps.rootPem, clock: deps.clock },
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

  app.get<{ Querystring: PageQuery }>(
    '/v1/claims',
    {
      onRequest: allow(['admin', 'operator', 'station', 'viewer']),
      schema: { tags: ['admin'], summary: 'Claims and their usage, oldest first, one page at a time', security, querystring: pageQuery('claim id'), response: { 200: page(claimSchema) } },
    },
    async (request) => pageOf(await registry.listClaims(), (c) => c.id, request.query, claimJson),
  );

  app.post<{ Params: { id: string } }>(
    '/v1/claims/:id/revoke',
    {
      onRequest: allow(['admin', 'operator', 'station']),
      schema: {
        tags: ['admin'],
        summary: 'Revoke a claim: no further enrollment with it (devices already enrolled are not affected)',
        security,
        params: { type: 'object', properties: { id: { type: 'string', maxLength: 128 } }, required: ['id'] },
        response: { 200: claimSchema },
      },
    },
    async (request) => {
      const operator = operatorOf(request);
      const claim = await registry.revokeClaim(request.params.id, { actor: operator.actor, action: 'claim.revoke', result: 'ok' });
      await deps.events.publish({ type: 'claim.revoked', claimId: claim.id, certificateSerial: claim.certificateSerial });
      if (claim.issuerPem !== null) await deps.events.publish({ type: 'trust.changed' });
      return claimJson(claim);
    },
  );

  app.post<{ Body: { name: string; template: string; certificate: string; maxUses?: number } }>(
    '/v1/claim-issuers',
    {
      onRequest: allow(['admin']),
      schema: {
        tags: ['admin'],
        summary: 'Register a manufacturer CA whose birth certificates act as claim credentials (serial = CN)',
        security,
        body: {
          type: 'object',
          required: ['name', 'template', 'certificate'],
          additionalProperties: false,
          properties: { name: { type: 'string', maxLength: 64 }, template: { type: 'string', maxLength: 128 }, certificate: { type: 'string', maxLength: 65536 }, maxUses: { type: 'integer', minimum: 1 } },
        },
        response: { 201: claimSchema },
      },
    },
    async (request, reply) => {
      const operator = operatorOf(request);
      const claim = await registerClaimIssuer({ registry, events: deps.events, clock: deps.clock }, { ...request.body, actor: operator.actor });
      return reply.status(201).send(claimJson(claim));
    },
  );
}
