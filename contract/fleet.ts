import { type Static, Type } from 'typebox';
import { policyActions } from '../core/index.ts';
import { bearer, Feed, LimitParam, List, Page, problems } from './common.ts';
import { auditResults, certificateStatuses, deviceStatuses, identityKinds, operatorRevocationReasons, sessionKinds, statusNoteMaxLength } from './constants.ts';
import { Answer, DateTime, ImmutableArray, Nullable, StringEnum, StringMap } from './json-schema.ts';

/**
 * Fleet operations (README "HTTPS API"; routes in provisioning/api/fleet-routes.ts): devices and services,
 * live sessions, policies, revoke/suspend/resume and the audit trail.
 */

// ---- answers -------------------------------------------------------------------------------------------

export const Device = Answer({
  id: Type.String(),
  kind: StringEnum(identityKinds),
  status: StringEnum(deviceStatuses),
  template: Type.String(),
  policy: Nullable(Type.String(), { description: 'policy override; null = the template policy' }),
  attributes: StringMap({ description: 'trusted attributes: what ${device.attributes.NAME} in a policy reads' }),
  reportedAttributes: StringMap({ description: 'what the device reported at enrollment; never read by a policy' }),
  statusReason: Nullable(Type.String()),
  createdAt: DateTime(),
  updatedAt: DateTime(),
});
export type Device = Static<typeof Device>;

/** Certificates are listed without their PEM bodies: the serial and fingerprint identify them. */
export const Certificate = Answer({
  serial: Type.String(),
  fingerprint: Type.String(),
  publicKeyHash: Type.String(),
  status: StringEnum(certificateStatuses),
  notBefore: DateTime(),
  notAfter: DateTime(),
  issuedAt: DateTime(),
  revokedAt: Nullable(DateTime()),
  revocationReason: Nullable(Type.String()),
  replaces: Nullable(Type.String()),
});
export type Certificate = Static<typeof Certificate>;

export const Session = Answer({
  clientId: Type.String(),
  kind: StringEnum(sessionKinds),
  certificateSerial: Type.String(),
  remoteAddress: Nullable(Type.String()),
  connectedAt: DateTime(),
  broker: Type.Optional(Type.String({ description: 'The broker holding the session (cluster mode).' })),
});
export type Session = Static<typeof Session>;

export const DeviceDetail = Answer({
  device: Device,
  effectivePolicy: Nullable(Type.String(), { description: 'the policy its sessions get; null if its template is gone' }),
  certificates: Type.Array(Certificate),
  session: Type.Union([Session, Type.Null()]),
});
export type DeviceDetail = Static<typeof DeviceDetail>;

/** What POST /v1/devices and POST /v1/services answer besides the identity's name: its certificate and how to use it. */
const issuedIdentity = (kind: 'device' | 'service') => ({
  policy: Nullable(Type.String()),
  serial: Type.String(),
  notAfter: DateTime(),
  certificate: Type.String({ description: `the ${kind} certificate (PEM)` }),
  chain: Type.String({ description: 'the issuing CA certificate (PEM), to send after the certificate' }),
  ca: Type.String({ description: 'the root CA certificate (PEM), to verify the gateway with' }),
});
export const CreatedDevice = Answer({ id: Type.String(), template: Type.String(), ...issuedIdentity('device') });
export type CreatedDevice = Static<typeof CreatedDevice>;
export const CreatedService = Answer({ name: Type.String(), ...issuedIdentity('service') });
export type CreatedService = Static<typeof CreatedService>;

const statementProperties = {
  sid: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  effect: StringEnum(['allow', 'deny']),
  actions: ImmutableArray(StringEnum(policyActions), { minItems: 1 }),
  topics: ImmutableArray(Type.String({ maxLength: 65535 }), { minItems: 1, maxItems: 64 }),
};
export const Statement = Answer(statementProperties);
export type Statement = Static<typeof Statement>;
export const Policy = Answer({ name: Type.String(), version: Type.Integer(), updatedAt: DateTime(), document: Answer({ statements: ImmutableArray(Statement) }) });
export type Policy = Static<typeof Policy>;

export const Explanation = Answer({
  policy: Type.String(),
  version: Type.Integer(),
  deviceId: Type.String(),
  deviceStatus: StringEnum(deviceStatuses),
  effectivePolicy: Nullable(Type.String(), { description: 'the policy the device actually gets, which may not be the one explained' }),
  action: Type.String(),
  topic: Type.String(),
  allowed: Type.Boolean(),
  code: Nullable(Type.String(), { description: 'the refusal code when not allowed' }),
  effect: Type.Unsafe<'allow' | 'deny' | 'no-match' | null>({
    type: ['string', 'null'],
    enum: ['allow', 'deny', 'no-match', null],
    description: 'null when the gateway decided before the policy ($-topics, invalid topics)',
  }),
  statementIndex: Nullable(Type.Integer()),
  pattern: Nullable(Type.String(), { description: 'the deciding topic filter with variables resolved' }),
  statement: Type.Union([Statement, Type.Null()]),
});
export type Explanation = Static<typeof Explanation>;

export const AuditEntry = Answer({
  id: Type.Integer(),
  at: DateTime(),
  actor: Type.String(),
  action: Type.String(),
  result: StringEnum(auditResults),
  code: Nullable(Type.String()),
  deviceId: Nullable(Type.String()),
  detail: Type.Unsafe<Record<string, unknown> | null>({ type: ['object', 'null'], additionalProperties: true }),
});
export type AuditEntry = Static<typeof AuditEntry>;

export const DevicePage = Page(Device);
export type DevicePage = Static<typeof DevicePage>;
export const SessionList = List(Session);
export type SessionList = Static<typeof SessionList>;
export const PolicyList = List(Policy);
export type PolicyList = Static<typeof PolicyList>;
export const AuditFeed = Feed(AuditEntry);
export type AuditFeed = Static<typeof AuditFeed>;

// ---- requests ------------------------------------------------------------------------------------------

const IdParams = Type.Object({ id: Type.String({ maxLength: 128 }) }, { additionalProperties: false });
const PolicyNameParams = Type.Object({ name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }) }, { additionalProperties: false });

const identityQueryProperties = {
  status: Type.Optional(StringEnum(deviceStatuses)),
  template: Type.Optional(Type.String({ maxLength: 128 })),
  prefix: Type.Optional(Type.String({ maxLength: 128, description: 'ids starting with this (case-sensitive, no wildcards)' })),
  after: Type.Optional(Type.String({ maxLength: 128, description: 'ids sorting after this one (the `next` of the previous page)' })),
  limit: Type.Optional(LimitParam),
};
export const DeviceQuery = Type.Object({ ...identityQueryProperties, kind: Type.Optional(StringEnum(identityKinds)) }, { additionalProperties: false });
export type DeviceQuery = Static<typeof DeviceQuery>;
export const ServiceQuery = Type.Object(identityQueryProperties, { additionalProperties: false });
export type ServiceQuery = Static<typeof ServiceQuery>;

export const CreateDevice = Type.Object(
  {
    id: Type.String({ maxLength: 128, description: 'device id: its MQTT client id (letters, digits, . _ : -)' }),
    csr: Type.String({ maxLength: 16_384, description: 'PKCS#10, PEM' }),
    template: Type.Optional(Type.String({ maxLength: 128, description: 'registration template, default `default`' })),
    policy: Type.Optional(Type.String({ maxLength: 128, description: 'policy override; default: the template policy' })),
    attributes: Type.Optional(StringMap({ description: 'trusted attributes policies may read' })),
  },
  { additionalProperties: false },
);
export type CreateDevice = Static<typeof CreateDevice>;

export const CreateService = Type.Object(
  {
    name: Type.String({ maxLength: 128, description: 'same rules as a device id' }),
    policy: Type.Optional(Type.String({ maxLength: 128, description: 'default `backend`' })),
    csr: Type.String({ maxLength: 16_384, description: 'PKCS#10, PEM' }),
  },
  { additionalProperties: false },
);
export type CreateService = Static<typeof CreateService>;

// Checked by the use-case, which explains a refused reason better than a schema enum would.
export const RevokeBody = Type.Object(
  { reason: Type.String({ maxLength: 64, description: `RFC 5280 reason: ${operatorRevocationReasons.join(', ')}` }) },
  { additionalProperties: false },
);
export type RevokeBody = Static<typeof RevokeBody>;
export const NoteBody = Type.Object(
  { reason: Type.Optional(Type.String({ maxLength: statusNoteMaxLength, description: 'free text for the audit trail' })) },
  { additionalProperties: false },
);
export type NoteBody = Static<typeof NoteBody>;

export const SessionQuery = Type.Object({ kind: Type.Optional(StringEnum(sessionKinds)) }, { additionalProperties: false });
export type SessionQuery = Static<typeof SessionQuery>;

export const PolicyBody = Type.Object(
  { statements: Type.Array(Type.Object(statementProperties, { additionalProperties: false }), { minItems: 1, maxItems: 256 }) },
  { additionalProperties: false },
);
export type PolicyBody = Static<typeof PolicyBody>;

export const ExplainRequest = Type.Object(
  {
    deviceId: Type.String({ maxLength: 128 }),
    action: StringEnum(policyActions),
    topic: Type.String({ maxLength: 65535, description: 'a topic name; a topic filter for subscribe' }),
  },
  { additionalProperties: false },
);
export type ExplainRequest = Static<typeof ExplainRequest>;

export const AuditQuery = Type.Object(
  {
    deviceId: Type.Optional(Type.String({ maxLength: 128 })),
    actor: Type.Optional(Type.String({ maxLength: 256 })),
    action: Type.Optional(Type.String({ maxLength: 128 })),
    result: Type.Optional(StringEnum(auditResults)),
    since: Type.Optional(DateTime({ description: 'entries at or after this time' })),
    until: Type.Optional(DateTime({ description: 'entries before this time' })),
    afterId: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'entries with a greater id, oldest first' })),
    limit: Type.Optional(LimitParam),
  },
  { additionalProperties: false },
);
export type AuditQuery = Static<typeof AuditQuery>;

// ---- routes --------------------------------------------------------------------------------------------

const fleet = { tags: ['fleet'], security: bearer };
const policies = { tags: ['policies'], security: bearer };

export const fleetSchemas = {
  listDevices: { ...fleet, summary: 'List devices and services, by id, one page at a time', querystring: DeviceQuery, response: { 200: DevicePage, ...problems } },
  getDevice: {
    ...fleet,
    summary: 'One device or service: its record, effective policy, certificates (without PEM) and live session',
    params: IdParams,
    response: { 200: DeviceDetail, ...problems },
  },
  createDevice: {
    ...fleet,
    summary: 'Register a device from a CSR (the key stays with the caller), without a claim',
    body: CreateDevice,
    response: { 201: CreatedDevice, ...problems },
  },
  revoke: {
    ...fleet,
    summary: 'Revoke a device or service for good: certificates revoked, live session closed, reconnects refused',
    params: IdParams,
    body: RevokeBody,
    response: { 200: Device, ...problems },
  },
  suspend: {
    ...fleet,
    summary: 'Suspend a device or service: live session closed and reconnects refused until it is resumed',
    params: IdParams,
    body: NoteBody,
    response: { 200: Device, ...problems },
  },
  resume: { ...fleet, summary: 'Resume a suspended device or service (a revoked one stays revoked)', params: IdParams, body: NoteBody, response: { 200: Device, ...problems } },
  listServices: { ...fleet, summary: 'List service identities (backend applications)', querystring: ServiceQuery, response: { 200: DevicePage, ...problems } },
  createService: {
    ...fleet,
    summary: 'Create a service identity from a CSR (the key stays with the caller); its client id is the name',
    body: CreateService,
    response: { 201: CreatedService, ...problems },
  },
  listSessions: { ...fleet, summary: 'Live MQTT sessions on the broker(s) this API runs with', querystring: SessionQuery, response: { 200: SessionList, ...problems } },
  listPolicies: { ...policies, summary: 'List policies', response: { 200: PolicyList, ...problems } },
  getPolicy: { ...policies, summary: 'One policy document with its version', params: PolicyNameParams, response: { 200: Policy, ...problems } },
  putPolicy: {
    ...policies,
    summary: 'Create or replace a policy; connected sessions using it get the new rules at once',
    params: PolicyNameParams,
    body: PolicyBody,
    response: { 200: Policy, ...problems },
  },
  explainPolicy: {
    ...policies,
    summary: 'Would this policy let this device publish, subscribe to or receive on this topic, and which statement decides?',
    params: PolicyNameParams,
    body: ExplainRequest,
    response: { 200: Explanation, ...problems },
  },
  audit: {
    tags: ['audit'],
    summary: 'Query the audit trail: newest first, or oldest first after `afterId` (to follow it)',
    security: bearer,
    querystring: AuditQuery,
    response: { 200: AuditFeed, ...problems },
  },
};
