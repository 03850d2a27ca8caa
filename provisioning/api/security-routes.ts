import type { FastifyInstance } from 'fastify';
import { type CaCredential, checkCsr, type Clock, FleetgateError, issueCertificate, operatorValidityDays, systemClock } from '../../core/index.ts';
import { type OperatorTokenRecord, operatorRoles, type Registry } from '../../registry/index.ts';
import { newAdminToken } from '../admin-token.ts';
import { auditRefusals } from '../audited.ts';
import {
  bootstrapGenerationPrefix,
  isBootstrapGeneration,
  isReservedTokenName,
  newOperatorToken,
  type OperatorAuth,
  operatorCertificateHash,
  type OperatorRole,
  operatorTokenHash,
  routeGuard,
} from './operator-auth.ts';

export interface SecurityRouteDeps {
  readonly registry: Registry;
  readonly auth: OperatorAuth;
  /** Signs operator certificates (POST /v1/operators/certificates); without it the route is not registered. */
  readonly deviceCa?: CaCredential;
  readonly clock?: Clock;
  /** Returned with an operator certificate: the issuing CA, then the root. */
  readonly pem?: { readonly root: string; readonly deviceCa: string };
}

const admins: readonly OperatorRole[] = ['admin'];
// Checking the trail's integrity is a read; stations have no business with the audit trail.
const auditReaders: readonly OperatorRole[] = ['admin', 'operator', 'viewer'];

const security = [{ bearer: [] }];
const dateTime = { type: 'string', format: 'date-time' } as const;
const errorSchema = { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } as const;
const errors = { '4xx': errorSchema, '5xx': errorSchema } as const;
const tokenName = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' } as const;
const role = { type: 'string', enum: [...operatorRoles] } as const;

const tokenSchema = {
  type: 'object',
  properties: { name: { type: 'string' }, role, createdAt: dateTime, revokedAt: { type: ['string', 'null'], format: 'date-time' } },
} as const;

/** `admin.…` names belong to the bootstrap token's generations (operator-auth.ts isBootstrapGeneration). */
function refuseReservedName(name: string): void {
  if (isReservedTokenName(name)) {
    throw new FleetgateError('REQUEST_INVALID', { message: `Token names starting with "${bootstrapGenerationPrefix}" are reserved for the bootstrap token; choose another name.` });
  }
}

const tokenJson = (t: OperatorTokenRecord) => ({ name: t.name, role: t.role, createdAt: t.createdAt.toISOString(), revokedAt: t.revokedAt?.toISOString() ?? null });

const verificationSchema = {
  type: 'object',
  properties: {
    ok: { type: 'boolean' },
    entries: { type: 'integer', description: 'entries verified intact (all of them when ok)' },
    firstBrokenId: { type: 'integer', description: 'lowest id where the log differs from what was written' },
    reason: { type: 'string' },
    head: {
      type: 'object',
      description: 'newest intact entry; keep its hash elsewhere to detect a later rewrite of the whole log',
      properties: { id: { type: 'integer' }, hash: { type: 'string' } },
    },
  },
} as const;

/**
 * Who may use the API and whether the audit trail is intact: personal operator tokens with roles (R6)
 * and the audit chain check. As in the fleet routes, authentication and the role check run in `onRequest`,
 * before the body is read, so a caller without the right credentials learns nothing but 401/403.
 */
export function registerSecurityRoutes(app: FastifyInstance, deps: SecurityRouteDeps): void {
  const { registry, auth } = deps;
  const { allow, operatorOf } = routeGuard(auth);

  app.post<{ Body: { name: string; role: OperatorRole } }>(
    '/v1/tokens',
    {
      onRequest: allow(admins),
      schema: {
        tags: ['admin'],
        summary: 'Create a personal operator token; the token is in this answer only',
        security,
        body: { type: 'object', required: ['name', 'role'], additionalProperties: false, properties: { name: tokenName, role } },
        response: { 201: { type: 'object', properties: { name: { type: 'string' }, role, token: { type: 'string' }, createdAt: dateTime } }, ...errors },
      },
    },
    async (request, reply) => {
      const operator = operatorOf(request);
      const { name, role: tokenRole } = request.body;
      const token = newOperatorToken();
      const created = await auditRefusals(registry, { actor: operator.actor, action: 'token.create', detail: { name, role: tokenRole } }, () => {
        refuseReservedName(name);
        return registry.createOperatorToken({ name, role: tokenRole, tokenHash: operatorTokenHash(token), audit: { actor: operator.actor, action: 'token.create', result: 'ok' } });
      });
      // Like a claim key: no proxy or client cache may keep a copy.
      reply.header('cache-control', 'no-store');
      return reply.status(201).send({ name: created.name, role: created.role, token, createdAt: created.createdAt.toISOString() });
    },
  );

  // Every role may ask who it is: the web console shows or hides controls from this answer (the routes
  // themselves still refuse), and a script can check a token before using it.
  app.get(
    '/v1/whoami',
    {
      onRequest: allow(operatorRoles),
      schema: {
        tags: ['admin'],
        summary: 'The operator behind these credentials: name and role',
        security,
        response: { 200: { type: 'object', properties: { name: { type: 'string' }, role } }, ...errors },
      },
    },
    async (request) => {
      const operator = operatorOf(request);
      return { name: operator.actor.replace(/^operator:/, ''), role: operator.role };
    },
  );

  app.get(
    '/v1/tokens',
    {
      onRequest: allow(admins),
      schema: { tags: ['admin'], summary: 'Personal operator tokens (never the tokens or their hashes)', security, response: { 200: { type: 'object', properties: { items: { type: 'array', items: tokenSchema }, next: { type: 'null', description: 'always null: the whole list is in this answer' } } }, ...errors } },
    },
    async () => ({ items: (await registry.listOperatorTokens()).map(tokenJson), next: null }),
  );

  app.post<{ Params: { name: string } }>(
    '/v1/tokens/:name/revoke',
    {
      onRequest: allow(admins),
      schema: {
        tags: ['admin'],
        summary: 'Revoke a personal operator token at once (final)',
        security,
        params: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', maxLength: 64 } } },
        response: { 200: tokenSchema, ...errors },
      },
    },
    async (request) => {
      const operator = operatorOf(request);
      const { name } = request.params;
      const revoked = await auditRefusals(registry, { actor: operator.actor, action: 'token.revoke', detail: { name } }, () =>
        registry.revokeOperatorToken(name, { actor: operator.actor, action: 'token.revoke', result: 'ok' }),
      );
      return tokenJson(revoked);
    },
  );

  // The bootstrap token's rotation (README "Operator tokens"). The new generation is stored first (by its
  // hash, under a reserved `admin.<time>` name), then every earlier one is stored as revoked: the token this
  // process read from admin.token at start, and the generations earlier rotations stored. Every API process
  // asks the registry before comparing with its own admin.token (operator-auth.ts tokenAuth), so the old
  // token is refused at once everywhere and the new one works everywhere, without a restart.
  app.post<{ Body: Record<string, never> }>(
    '/v1/tokens/admin/rotate',
    {
      onRequest: allow(admins),
      // No body, or `{}`: anything else is refused before anything changes.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
      schema: {
        tags: ['admin'],
        summary: 'Rotate the bootstrap admin token: the new token is in this answer only; the old one is refused from now on',
        security,
        body: { type: 'object', additionalProperties: false, properties: {} },
        response: { 201: { type: 'object', properties: { name: { type: 'string' }, token: { type: 'string' }, rotatedAt: dateTime, retired: { type: 'array', items: { type: 'string' } } } }, ...errors },
      },
    },
    async (request, reply) => {
      const operator = operatorOf(request);
      const now = (deps.clock ?? systemClock).now();
      const name = `${bootstrapGenerationPrefix}${now.toISOString().replace(/[-:.]/g, '')}`;
      const token = newAdminToken();
      const audit = { actor: operator.actor, action: 'token.rotate-admin', result: 'ok', detail: { name } } as const;
      const retired = await auditRefusals(registry, { actor: operator.actor, action: 'token.rotate-admin', detail: { name } }, async () => {
        await registry.createOperatorToken({ name, role: 'admin', tokenHash: operatorTokenHash(token), audit });
        const names: string[] = [];
        const { bootstrapTokenHash } = auth;
        if (bootstrapTokenHash !== undefined && (await registry.findOperatorToken(bootstrapTokenHash)) === undefined) {
          // The admin.token this process started with, never stored until now: stored so it can be revoked.
          const first = `${bootstrapGenerationPrefix}file-${bootstrapTokenHash.slice(0, 12)}`;
          await registry.createOperatorToken({ name: first, role: 'admin', tokenHash: bootstrapTokenHash, audit: { ...audit, detail: { name: first, retiring: true } } });
        }
        for (const stored of await registry.listOperatorTokens()) {
          if (stored.name === name || stored.revokedAt !== null || !isBootstrapGeneration(stored.name)) continue;
          await registry.revokeOperatorToken(stored.name, { actor: operator.actor, action: 'token.revoke', result: 'ok', detail: { reason: 'bootstrap token rotated', by: name } });
          names.push(stored.name);
        }
        return names;
      });
      reply.header('cache-control', 'no-store');
      return reply.status(201).send({ name, token, rotatedAt: now.toISOString(), retired });
    },
  );

  const { deviceCa, clock } = deps;
  if (deviceCa !== undefined && clock !== undefined) {
    app.post<{ Body: { name: string; role: OperatorRole; csr: string } }>(
      '/v1/operators/certificates',
      {
        onRequest: allow(admins),
        schema: {
          tags: ['admin'],
          summary: 'Issue an operator certificate from a CSR (the key stays with the caller); revoke it as the token of the same name',
          security,
          body: {
            type: 'object',
            required: ['name', 'role', 'csr'],
            additionalProperties: false,
            properties: { name: tokenName, role, csr: { type: 'string', maxLength: 16_384, description: 'PKCS#10, PEM' } },
          },
          response: {
            201: {
              type: 'object',
              properties: {
                name: { type: 'string' },
                role,
                certificate: { type: 'string', description: 'the operator certificate (PEM)' },
                chain: { type: 'string', description: 'the issuing CA certificate, then the root (PEM)' },
              },
            },
            ...errors,
          },
        },
      },
      async (request, reply) => {
        const operator = operatorOf(request);
        const { name, role: certificateRole, csr } = request.body;
        const detail = { name, role: certificateRole, kind: 'certificate' };
        const issued = await auditRefusals(registry, { actor: operator.actor, action: 'token.create', detail }, async () => {
          refuseReservedName(name);
          const checked = await checkCsr(csr);
          const certificate = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: { kind: 'operator', name, validityDays: operatorValidityDays }, clock });
          // The row is the credential: its hash binds the name to this one certificate (operatorCertificateHash).
          await registry.createOperatorToken({
            name,
            role: certificateRole,
            tokenHash: operatorCertificateHash(certificate.fingerprint),
            audit: { actor: operator.actor, action: 'token.create', result: 'ok', detail: { kind: 'certificate', serial: certificate.serial } },
          });
          return certificate;
        });
        return reply.status(201).send({ name, role: certificateRole, certificate: issued.pem, chain: deps.pem ? deps.pem.deviceCa + deps.pem.root : '' });
      },
    );
  }

  app.get<{ Querystring: { anchor?: string } }>(
    '/v1/audit/verify',
    {
      onRequest: allow(auditReaders),
      // Walks the whole log: one a second on average is plenty (route-level override of @fastify/rate-limit).
      config: { rateLimit: { max: 60, timeWindow: 60_000 } },
      schema: {
        tags: ['audit'],
        summary: 'Check the audit hash chain from the first entry to the last',
        security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { anchor: { type: 'string', pattern: '^[1-9][0-9]{0,15}:[0-9a-f]{64}$', description: '`id:hash` of an earlier head; the log must still contain it' } },
        },
        response: { 200: verificationSchema, ...errors },
      },
    },
    async (request) => {
      const anchor = request.query.anchor?.split(':');
      const verdict = await registry.verifyAudit(anchor ? { anchor: { id: Number(anchor[0]), hash: anchor[1] ?? '' } } : {});
      // A broken chain is evidence of tampering (or disk corruption): make sure it reaches the logs and alerts.
      if (!verdict.ok) request.log.error({ audit: verdict }, 'audit hash chain is broken');
      return verdict;
    },
  );
}
