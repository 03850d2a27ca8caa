import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { credentialOf, FleetgateError, type TrustedIssuers } from '../../core/index.ts';
import type { OperatorRole, Registry } from '../../registry/index.ts';

export type { OperatorRole } from '../../registry/index.ts';

export interface Operator {
  /** For audit entries: `operator:<name>`. */
  readonly actor: string;
  readonly role: OperatorRole;
}

export interface OperatorAuth {
  authenticate(request: FastifyRequest): Promise<Operator>;
  /**
   * SHA-256 (hex) of the bootstrap token this process read from `admin.token` at start, if it has one:
   * what `POST /v1/tokens/admin/rotate` retires.
   */
  readonly bootstrapTokenHash?: string;
}

/**
 * Stored tokens named `admin.<time>` (or `admin.file-<hash prefix>` for the admin.token a rotation retired)
 * are the bootstrap token's generations (`fleetgate token rotate-admin`, README "HTTPS API"): they act as
 * `operator:admin`. No personal token or certificate may take a name starting with `admin.`.
 */
export const bootstrapGenerationPrefix = 'admin.';
export const isBootstrapGeneration = (name: string) => /^admin\.(?:\d{8}T\d{9}Z|file-[0-9a-f]{12})$/.test(name);
export const isReservedTokenName = (name: string) => name.toLowerCase().startsWith(bootstrapGenerationPrefix);

/** Personal tokens start with this, so that people and secret scanners recognise one in a paste or a log. */
export const operatorTokenPrefix = 'fgt_';

/** A new personal operator token: 256 random bits, base64url, prefixed. Shown once; only its hash is kept. */
export function newOperatorToken(): string {
  return operatorTokenPrefix + randomBytes(32).toString('base64url');
}

/**
 * How a token is stored and looked up: SHA-256, lower-case hex. A fast hash is enough because a token is
 * 256 random bits, not a password: there is no dictionary to try against a stolen hash.
 */
export function operatorTokenHash(token: string): string {
  return digest(token).toString('hex');
}

/**
 * Operator certificates (README "HTTPS API") live in the operator_tokens table too, so listing and revocation work
 * unchanged: their token_hash is the SHA-256 (lower-case hex) of `cert:` followed by the certificate's
 * SHA-256 fingerprint (lower-case hex, no colons). Accepts the fingerprint in Node's "AB:CD:…" form too.
 */
export function operatorCertificateHash(fingerprint256: string): string {
  return operatorTokenHash(`cert:${normaliseFingerprint(fingerprint256)}`);
}

const normaliseFingerprint = (fingerprint: string) => fingerprint.replaceAll(':', '').toLowerCase();

const digest = (value: string) => createHash('sha256').update(value).digest();

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  // Every token fleetgate makes is base64url (the bootstrap token, `fgt_…` personal tokens). Anything else is
  // refused before a lookup: operator certificates share the token table under `cert:<fingerprint>`, and a
  // certificate's fingerprint is public, so it must never work as a Bearer token.
  const match = typeof header === 'string' ? /^Bearer\s+([A-Za-z0-9_-]{16,512})$/i.exec(header) : null;
  if (!match?.[1]) throw new FleetgateError('API_UNAUTHENTICATED');
  return match[1];
}

/**
 * The operator name and certificate hash of a verified TLS client certificate, classified by core's
 * credentialOf exactly as the broker classifies its peers; undefined for anything else.
 */
function operatorCertificate(request: FastifyRequest, issuers: TrustedIssuers | undefined): { name: string; hash: string } | undefined {
  if (issuers === undefined) return undefined;
  const socket = request.raw.socket as TLSSocket;
  if (typeof socket.getPeerX509Certificate !== 'function') return undefined;
  const credential = credentialOf(socket, issuers);
  return credential.kind === 'operator' ? { name: credential.name, hash: operatorCertificateHash(credential.fingerprint) } : undefined;
}

/**
 * Bearer-token authentication: a token stored by the registry and not revoked (its role, actor
 * `operator:<name>`; `operator:admin` for a generation of the bootstrap token), else the bootstrap token
 * from `admin.token` (role admin, actor operator:admin). The registry is asked first, so a bootstrap token
 * retired by a rotation (stored as revoked) is refused at once by every API process sharing the registry,
 * even one that read it from its own `admin.token` at start.
 * Without an Authorization header, an operator certificate presented as TLS client certificate (issued by
 * a device CA of the trust store `issuers`, see operatorCertificateHash) stands for the
 * stored, non-revoked record of the same name. A Bearer header, when present, always wins.
 * The bootstrap token is compared as SHA-256 digests with timingSafeEqual, so neither its length nor its
 * prefix leaks through timing. Stored tokens are found by their hash through a unique index: the timing
 * of that lookup depends on the hash of what the caller sent, which tells nothing about any stored token.
 */
export function tokenAuth(deps: { adminToken: string; registry: Pick<Registry, 'findOperatorToken'>; issuers?: () => TrustedIssuers }): OperatorAuth {
  const expected = digest(deps.adminToken);
  return {
    bootstrapTokenHash: expected.toString('hex'),
    async authenticate(request) {
      const bearer = bearerToken(request);
      if (bearer === undefined) return certificateOperator(request);
      const presented = digest(bearer);
      const stored = await deps.registry.findOperatorToken(presented.toString('hex'));
      if (stored === undefined) {
        if (timingSafeEqual(presented, expected)) return { actor: 'operator:admin', role: 'admin' };
        throw new FleetgateError('API_UNAUTHENTICATED', { detail: { reason: 'unknown token' } });
      }
      // Same answer as an unknown token: a caller holding a leaked, revoked token learns nothing more.
      if (stored.revokedAt !== null) throw new FleetgateError('API_UNAUTHENTICATED', { detail: { reason: 'revoked token', name: stored.name } });
      return { actor: isBootstrapGeneration(stored.name) ? 'operator:admin' : `operator:${stored.name}`, role: stored.role };
    },
  };

  async function certificateOperator(request: FastifyRequest): Promise<Operator> {
    // Operator certificates come from a device CA only (credentialOf): no claim or manufacturer CA can vouch for one.
    const presented = operatorCertificate(request, deps.issuers?.());
    if (presented === undefined) throw new FleetgateError('API_UNAUTHENTICATED');
    const stored = await deps.registry.findOperatorToken(presented.hash);
    if (stored === undefined || stored.name !== presented.name) {
      throw new FleetgateError('API_UNAUTHENTICATED', { detail: { reason: 'unknown operator certificate', name: presented.name } });
    }
    if (stored.revokedAt !== null) throw new FleetgateError('API_UNAUTHENTICATED', { detail: { reason: 'revoked operator certificate', name: stored.name } });
    return { actor: `operator:${stored.name}`, role: stored.role };
  }
}

const noStoredTokens: Pick<Registry, 'findOperatorToken'> = { findOperatorToken: async () => undefined };

/** The bootstrap token only (personal tokens are refused); for processes that have no registry at hand. */
export function bootstrapTokenAuth(adminToken: string): OperatorAuth {
  return tokenAuth({ adminToken, registry: noStoredTokens });
}

/** preHandler-style guard: who may call a route. */
export async function requireRole(auth: OperatorAuth, request: FastifyRequest, roles: readonly OperatorRole[]): Promise<Operator> {
  const operator = await auth.authenticate(request);
  if (!roles.includes(operator.role)) throw new FleetgateError('API_FORBIDDEN', { detail: { role: operator.role, needs: roles } });
  return operator;
}

/**
 * Route guards that authenticate and check the role in `onRequest`, before the body is read, so a caller
 * without the right credentials learns nothing but 401/403. `operatorOf` gives the handler who it was.
 */
export function routeGuard(auth: OperatorAuth): {
  allow: (roles: readonly OperatorRole[]) => (request: FastifyRequest) => Promise<void>;
  operatorOf: (request: FastifyRequest) => Operator;
} {
  const operators = new WeakMap<FastifyRequest, Operator>();
  return {
    allow: (roles) => async (request) => {
      operators.set(request, await requireRole(auth, request, roles));
    },
    operatorOf: (request) => {
      const operator = operators.get(request);
      if (operator === undefined) throw new FleetgateError('API_UNAUTHENTICATED'); // a route registered without its guard
      return operator;
    },
  };
}
