import { type Static, Type } from 'typebox';
import { bearer, List, problems } from './common.ts';
import { operatorRoles } from './constants.ts';
import { Answer, DateTime, Nullable, StringEnum } from './json-schema.ts';

/** Who may use the API and whether the audit trail is intact (routes in provisioning/api/security-routes.ts). */

const Role = StringEnum(operatorRoles);
const TokenName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' });

// ---- answers -------------------------------------------------------------------------------------------

/** A personal operator token as listed: never the token or its hash. */
export const Token = Answer({ name: Type.String(), role: Role, createdAt: DateTime(), revokedAt: Nullable(DateTime()) });
export type Token = Static<typeof Token>;
export const TokenList = List(Token);
export type TokenList = Static<typeof TokenList>;

/** The token is in this one answer only. */
export const CreatedToken = Answer({ name: Type.String(), role: Role, token: Type.String(), createdAt: DateTime() });
export type CreatedToken = Static<typeof CreatedToken>;

export const Whoami = Answer({ name: Type.String(), role: Role });
export type Whoami = Static<typeof Whoami>;

export const RotatedAdminToken = Answer({ name: Type.String(), token: Type.String(), rotatedAt: DateTime(), retired: Type.Array(Type.String()) });
export type RotatedAdminToken = Static<typeof RotatedAdminToken>;

export const OperatorCertificate = Answer({
  name: Type.String(),
  role: Role,
  certificate: Type.String({ description: 'the operator certificate (PEM)' }),
  chain: Type.String({ description: 'the issuing CA certificate, then the root (PEM)' }),
});
export type OperatorCertificate = Static<typeof OperatorCertificate>;

export const AuditVerification = Answer({
  ok: Type.Boolean(),
  entries: Type.Integer({ description: 'entries verified intact (all of them when ok)' }),
  firstBrokenId: Type.Optional(Type.Integer({ description: 'lowest id where the log differs from what was written' })),
  reason: Type.Optional(Type.String()),
  head: Type.Optional(
    Answer(
      { id: Type.Integer(), hash: Type.String() },
      { description: 'newest intact entry; keep its hash elsewhere to detect a later rewrite of the whole log' },
    ),
  ),
});
export type AuditVerification = Static<typeof AuditVerification>;

// ---- requests ------------------------------------------------------------------------------------------

export const CreateToken = Type.Object({ name: TokenName, role: Role }, { additionalProperties: false });
export type CreateToken = Static<typeof CreateToken>;

export const CreateOperatorCertificate = Type.Object(
  { name: TokenName, role: Role, csr: Type.String({ maxLength: 16_384, description: 'PKCS#10, PEM' }) },
  { additionalProperties: false },
);
export type CreateOperatorCertificate = Static<typeof CreateOperatorCertificate>;

export const AuditVerifyQuery = Type.Object(
  { anchor: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}:[0-9a-f]{64}$', description: '`id:hash` of an earlier head; the log must still contain it' })) },
  { additionalProperties: false },
);
export type AuditVerifyQuery = Static<typeof AuditVerifyQuery>;

// ---- routes --------------------------------------------------------------------------------------------

const admin = { tags: ['admin'], security: bearer };

export const securitySchemas = {
  createToken: { ...admin, summary: 'Create a personal operator token; the token is in this answer only', body: CreateToken, response: { 201: CreatedToken, ...problems } },
  whoami: { ...admin, summary: 'The operator behind these credentials: name and role', response: { 200: Whoami, ...problems } },
  listTokens: { ...admin, summary: 'Personal operator tokens (never the tokens or their hashes)', response: { 200: TokenList, ...problems } },
  revokeToken: {
    ...admin,
    summary: 'Revoke a personal operator token at once (final)',
    params: Type.Object({ name: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
    response: { 200: Token, ...problems },
  },
  rotateAdminToken: {
    ...admin,
    summary: 'Rotate the bootstrap admin token: the new token is in this answer only; the old one is refused from now on',
    body: Type.Object({}, { additionalProperties: false }),
    response: { 201: RotatedAdminToken, ...problems },
  },
  createOperatorCertificate: {
    ...admin,
    summary: 'Issue an operator certificate from a CSR (the key stays with the caller); revoke it as the token of the same name',
    body: CreateOperatorCertificate,
    response: { 201: OperatorCertificate, ...problems },
  },
  verifyAudit: {
    tags: ['audit'],
    summary: 'Check the audit hash chain from the first entry to the last',
    security: bearer,
    querystring: AuditVerifyQuery,
    response: { 200: AuditVerification, ...problems },
  },
};
