import { type Static, Type } from 'typebox';
import { bearer, LimitParam, Page } from './common.ts';
import { claimKinds, templateLimitMax } from './constants.ts';
import { Answer, DateTime, ImmutableArray, Nullable, StringEnum, StringMap } from './json-schema.ts';

/** Factory and fleet administration (routes in provisioning/api/admin-routes.ts): templates, claims, allow-lists. */

// ---- answers -------------------------------------------------------------------------------------------

export const Claim = Answer({
  claimId: Type.String(),
  template: Type.String(),
  kind: StringEnum(claimKinds),
  maxUses: Nullable(Type.Integer()),
  uses: Type.Integer(),
  status: Type.String(),
  expiresAt: DateTime(),
  createdAt: DateTime(),
});
export type Claim = Static<typeof Claim>;

export const Template = Answer({
  name: Type.String(),
  policy: Type.String(),
  validityDays: Type.Integer(),
  keyTypes: ImmutableArray(Type.String()),
  requireAllowlist: Type.Boolean(),
  allowReenroll: Type.Boolean(),
  renewAfterExpiryDays: Type.Integer({ description: 'days after expiry during which a certificate may still renew once (0: never)' }),
  limits: Answer({
    publishPerSecond: Type.Optional(Type.Integer()),
    publishBytesPerSecond: Type.Optional(Type.Integer()),
    outboundQueueMessages: Type.Optional(Type.Integer()),
    outboundQueueBytes: Type.Optional(Type.Integer()),
  }),
  createdAt: DateTime(),
  updatedAt: DateTime(),
});
export type Template = Static<typeof Template>;

/** The claim key is in this one answer only. */
export const CreatedClaim = Answer({
  claimId: Type.String(),
  template: Type.String(),
  maxUses: Nullable(Type.Integer()),
  expiresAt: DateTime(),
  certificate: Type.String(),
  privateKey: Type.String(),
  ca: Type.String(),
});
export type CreatedClaim = Static<typeof CreatedClaim>;

export const AllowlistImport = Answer({ added: Type.Integer(), total: Type.Integer() });
export type AllowlistImport = Static<typeof AllowlistImport>;

export const TemplatePage = Page(Template);
export type TemplatePage = Static<typeof TemplatePage>;
export const ClaimPage = Page(Claim);
export type ClaimPage = Static<typeof ClaimPage>;

// ---- requests ------------------------------------------------------------------------------------------

// The same page shape as the fleet routes: `{items, next}`, `next` passed back as `after`.
const pageQuery = (key: string) =>
  Type.Object(
    {
      after: Type.Optional(Type.String({ maxLength: 128, description: `the ${key} the previous page ended with (its \`next\`)` })),
      limit: Type.Optional(LimitParam),
    },
    { additionalProperties: false },
  );
export const PageQuery = pageQuery('name');
export type PageQuery = Static<typeof PageQuery>;

/** A limit set to a positive integer is stored; null removes it (the gateway default applies again). */
const LimitSetting = Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 1, maximum: templateLimitMax });

export const PutTemplate = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
    policy: Type.Optional(Type.String({ maxLength: 128 })),
    validityDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
    keyTypes: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
    requireAllowlist: Type.Optional(Type.Boolean()),
    allowReenroll: Type.Optional(Type.Boolean()),
    // README "Renewal after expiry": an expired certificate may renew once within this many days (0: never).
    renewAfterExpiryDays: Type.Optional(Type.Integer({ minimum: 0, maximum: 3650 })),
    // Traffic limits of the template's devices, merged into the current ones (README "Flow control and admission limits").
    limits: Type.Optional(
      Type.Object(
        {
          publishPerSecond: Type.Optional(LimitSetting),
          publishBytesPerSecond: Type.Optional(LimitSetting),
          outboundQueueMessages: Type.Optional(LimitSetting),
          outboundQueueBytes: Type.Optional(LimitSetting),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type PutTemplate = Static<typeof PutTemplate>;

// Attributes given here are trusted: they fill ${device.attributes.NAME} in policies (README "Enrollment and renewal").
export const AllowlistBody = Type.Object(
  {
    serials: Type.Array(
      Type.Union([Type.String({ maxLength: 128 }), Type.Object({ serial: Type.String({ maxLength: 128 }), attributes: Type.Optional(StringMap()) }, { additionalProperties: false })]),
      { maxItems: 100_000 },
    ),
  },
  { additionalProperties: false },
);
export type AllowlistBody = Static<typeof AllowlistBody>;

export const CreateClaim = Type.Object(
  { template: Type.String({ maxLength: 128 }), maxUses: Type.Optional(Type.Integer({ minimum: 1 })), expiresInSeconds: Type.Optional(Type.Integer({ minimum: 60 })) },
  { additionalProperties: false },
);
export type CreateClaim = Static<typeof CreateClaim>;

export const RegisterClaimIssuer = Type.Object(
  {
    name: Type.String({ maxLength: 64 }),
    template: Type.String({ maxLength: 128 }),
    certificate: Type.String({ maxLength: 65536 }),
    maxUses: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);
export type RegisterClaimIssuer = Static<typeof RegisterClaimIssuer>;

// ---- routes --------------------------------------------------------------------------------------------

// These answers have never carried a schema for refusals (`{code, message}` all the same).
const admin = { tags: ['admin'], security: bearer };

export const adminSchemas = {
  listTemplates: { ...admin, summary: 'Registration templates, by name, one page at a time', querystring: pageQuery('name'), response: { 200: TemplatePage } },
  putTemplate: { ...admin, summary: 'Create or replace a registration template', body: PutTemplate, response: { 201: Template } },
  importAllowlist: {
    ...admin,
    summary: 'Add device serials to the template allow-list, each optionally with the attributes its device gets at enrollment',
    params: Type.Object({ name: Type.String() }),
    body: AllowlistBody,
    response: { 200: AllowlistImport },
  },
  createClaim: { ...admin, summary: 'Issue a claim certificate and key for a factory batch', body: CreateClaim, response: { 201: CreatedClaim } },
  listClaims: { ...admin, summary: 'Claims and their usage, oldest first, one page at a time', querystring: pageQuery('claim id'), response: { 200: ClaimPage } },
  revokeClaim: {
    ...admin,
    summary: 'Revoke a claim: no further enrollment with it (devices already enrolled are not affected)',
    params: Type.Object({ id: Type.String({ maxLength: 128 }) }),
    response: { 200: Claim },
  },
  registerClaimIssuer: {
    ...admin,
    summary: 'Register a manufacturer CA whose birth certificates act as claim credentials (serial = CN)',
    body: RegisterClaimIssuer,
    response: { 201: Claim },
  },
};
