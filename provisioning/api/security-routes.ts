import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { operatorRoles, securitySchemas as schemas, type Token } from '../../contract/index.ts';
import { checkCsr, type Clock, FleetgateError, issueCertificate, operatorValidityDays, systemClock } from '../../core/index.ts';
import type { OperatorTokenRecord, Registry } from '../../registry/index.ts';
import type { CertificateAuthorities } from '../certificate-authorities.ts';
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
  readonly authorities?: Pick<CertificateAuthorities, 'issuer'>;
  readonly clock?: Clock;
}

const admins: readonly OperatorRole[] = ['admin'];
// Checking the trail's integrity is a read; stations have no business with the audit trail.
const auditReaders: readonly OperatorRole[] = ['admin', 'operator', 'viewer'];

/** `admin.…` names belong to the bootstrap token's generations (operator-auth.ts isBootstrapGeneration). */
function refuseReservedName(name: string): void {
  if (isReservedTokenName(name)) {
    throw new FleetgateError('REQUEST_INVALID', { message: `Token names starting with "${bootstrapGenerationPrefix}" are reserved for the bootstrap token; choose another name.` });
  }
}

const tokenJson = (t: OperatorTokenRecord): Token => ({ name: t.name, role: t.role, createdAt: t.createdAt.toISOString(), revokedAt: t.revokedAt?.toISOString() ?? null });

/**
 * Who may use the API and whether the audit trail is intact: personal operator tokens with roles (R6)
 * and the audit chain check. As in the fleet routes, authentication and the role check run in `onRequest`,
 * before the body is read, so a caller without the right credentials learns nothing but 401/403.
 */
export function registerSecurityRoutes(fastify: FastifyInstance, deps: SecurityRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { registry, auth } = deps;
  const { allow, operatorOf } = routeGuard(auth);

  app.post(
    '/v1/tokens',
    { onRequest: allow(admins), schema: schemas.createToken },
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
    { onRequest: allow(operatorRoles), schema: schemas.whoami },
    async (request) => {
      const operator = operatorOf(request);
      return { name: operator.actor.replace(/^operator:/, ''), role: operator.role };
    },
  );

  app.get(
    '/v1/tokens',
    { onRequest: allow(admins), schema: schemas.listTokens },
    async () => ({ items: (await registry.listOperatorTokens()).map(tokenJson), next: null }),
  );

  app.post(
    '/v1/tokens/:name/revoke',
    { onRequest: allow(admins), schema: schemas.revokeToken },
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
  app.post(
    '/v1/tokens/admin/rotate',
    {
      onRequest: allow(admins),
      // No body, or `{}`: anything else is refused before anything changes.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
      schema: schemas.rotateAdminToken,
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

  const { authorities, clock } = deps;
  if (authorities !== undefined && clock !== undefined) {
    app.post(
      '/v1/operators/certificates',
      { onRequest: allow(admins), schema: schemas.createOperatorCertificate },
      async (request, reply) => {
        const operator = operatorOf(request);
        const { name, role: certificateRole, csr } = request.body;
        const detail = { name, role: certificateRole, kind: 'certificate' };
        const issued = await auditRefusals(registry, { actor: operator.actor, action: 'token.create', detail }, async () => {
          refuseReservedName(name);
          const checked = await checkCsr(csr);
          const deviceCa = await authorities.issuer('device');
          const certificate = Object.assign(await issueCertificate({ issuer: deviceCa.credential, publicKey: checked.publicKey, profile: { kind: 'operator', name, validityDays: operatorValidityDays }, clock }), { chain: deviceCa.chainPem });
          // The row is the credential: its hash binds the name to this one certificate (operatorCertificateHash).
          await registry.createOperatorToken({
            name,
            role: certificateRole,
            tokenHash: operatorCertificateHash(certificate.fingerprint),
            audit: { actor: operator.actor, action: 'token.create', result: 'ok', detail: { kind: 'certificate', serial: certificate.serial } },
          });
          return certificate;
        });
        return reply.status(201).send({ name, role: certificateRole, certificate: issued.pem, chain: issued.chain });
      },
    );
  }

  app.get(
    '/v1/audit/verify',
    {
      onRequest: allow(auditReaders),
      // Walks the whole log: one a second on average is plenty (route-level override of @fastify/rate-limit).
      config: { rateLimit: { max: 60, timeWindow: 60_000 } },
      schema: schemas.verifyAudit,
    },
    async (request) => {
      const anchor = request.query.anchor?.split(':');
      const verdict = await registry.verifyAudit(anchor ? { anchor: { id: Number(anchor[0]), hash: anchor[1] ?? '' } } : {});
      // A broken chain is evidence of tampering (or disk corruption): make sure it reaches the logs and alerts.
      if (!verdict.ok) request.log.error({ audit: verdict }, 'audit hash chain is broken');
      // Recorded, so the fleet health check can tell when the chain was last verified and what it showed
      // (core/fleet-checks.ts, audit-chain-verification). After the walk: this entry is not part of it.
      await registry.appendAudit({
        actor: operatorOf(request).actor,
        action: 'audit.verify',
        result: verdict.ok ? 'ok' : 'refused',
        detail: { ok: verdict.ok, entries: verdict.entries, ...(verdict.firstBrokenId === undefined ? {} : { firstBrokenId: verdict.firstBrokenId }), anchored: anchor !== undefined },
      });
      return verdict;
    },
  );
}
