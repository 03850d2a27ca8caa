import type { FastifyInstance } from 'fastify';
import {
  assertDeviceId,
  type CaCredential,
  type Clock,
  compilePolicy,
  decideInScope,
  effectivePolicyName,
  type EventBus,
  FleetgateError,
  parsePolicyDocument,
  type PolicyAction,
  type RevocationUrls,
  type SessionDirectory,
  type SessionSummary,
} from '../../core/index.ts';
import type { AuditEntry, CertificateRecord, DeviceRecord, DeviceStatus, IdentityKind, PolicyRecord, Registry } from '../../registry/index.ts';
import { auditRefusals } from '../audited.ts';
import { registerDevice } from '../register-device.ts';
import { registerService } from '../register-service.ts';
import { changeDeviceStatus, operatorRevocationReasons, type StatusAction } from '../revoke-device.ts';
import { type OperatorAuth, type OperatorRole, routeGuard } from './operator-auth.ts';

export interface FleetRouteDeps {
  readonly registry: Registry;
  readonly auth: OperatorAuth;
  readonly events: EventBus;
  readonly sessions: SessionDirectory;
  /** For service certificates: the device-issuing CA signs them, with the CRL and OCSP URLs of the API. */
  readonly issuing: { readonly deviceCa: CaCredential; readonly clock: Clock; readonly revocation?: RevocationUrls };
  /** Returned with a service certificate: the issuing CA (chain) and the root (trust anchor). */
  readonly pem: { readonly root: string; readonly deviceCa: string };
}

// Who may call what (docs/THREAT-MODEL.md R6): operators act on identities and read; viewers only read; policies and new
// service identities are admin work. Stations have their own routes (claims, allow-lists) and none here.
const readers: readonly OperatorRole[] = ['admin', 'operator', 'viewer'];
const actors: readonly OperatorRole[] = ['admin', 'operator'];
const admins: readonly OperatorRole[] = ['admin'];

const security = [{ bearer: [] }];
const nullable = (type: string) => ({ type: [type, 'null'] });
const dateTime = { type: 'string', format: 'date-time' } as const;
const errorSchema = { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } as const;
const errors = { '4xx': errorSchema, '5xx': errorSchema } as const;

/** What POST /v1/devices and POST /v1/services answer besides the identity's name: its certificate and how to use it. */
const issuedIdentity = (kind: 'device' | 'service') => ({
  policy: nullable('string'),
  serial: { type: 'string' },
  notAfter: dateTime,
  certificate: { type: 'string', description: `the ${kind} certificate (PEM)` },
  chain: { type: 'string', description: 'the issuing CA certificate (PEM), to send after the certificate' },
  ca: { type: 'string', description: 'the root CA certificate (PEM), to verify the gateway with' },
});
// Query values arrive as strings and the API does not coerce types, so numbers are digit strings here.
const limitParam = { type: 'string', pattern: '^[0-9]{1,4}$', description: '1 to 1000, default 100' } as const;
const idParams = { type: 'object', required: ['id'], additionalProperties: false, properties: { id: { type: 'string', maxLength: 128 } } } as const;
const policyNameParams = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: { name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' } },
} as const;
const noteBody = {
  type: 'object',
  additionalProperties: false,
  properties: { reason: { type: 'string', maxLength: 256, description: 'free text for the audit trail' } },
} as const;

const deviceSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: ['device', 'service'] },
    status: { type: 'string', enum: ['active', 'suspended', 'revoked'] },
    template: { type: 'string' },
    policy: { ...nullable('string'), description: 'policy override; null = the template policy' },
    attributes: { type: 'object', additionalProperties: { type: 'string' }, description: 'trusted attributes: what ${device.attributes.NAME} in a policy reads' },
    reportedAttributes: { type: 'object', additionalProperties: { type: 'string' }, description: 'what the device reported at enrollment; never read by a policy' },
    statusReason: nullable('string'),
    createdAt: dateTime,
    updatedAt: dateTime,
  },
} as const;

const certificateSchema = {
  type: 'object',
  properties: {
    serial: { type: 'string' },
    fingerprint: { type: 'string' },
    publicKeyHash: { type: 'string' },
    status: { type: 'string', enum: ['active', 'superseded', 'revoked'] },
    notBefore: dateTime,
    notAfter: dateTime,
    issuedAt: dateTime,
    revokedAt: { ...nullable('string'), format: 'date-time' },
    revocationReason: nullable('string'),
    replaces: nullable('string'),
  },
} as const;

const sessionSchema = {
  type: 'object',
  properties: {
    clientId: { type: 'string' },
    kind: { type: 'string', enum: ['device', 'claim'] },
    certificateSerial: { type: 'string' },
    remoteAddress: nullable('string'),
    connectedAt: dateTime,
    broker: { type: 'string', description: 'The broker holding the session (cluster mode).' },
  },
} as const;

/** A cluster's session list lives in Redis; when that is out of reach the API says so instead of a bare 500. */
async function listSessions(directory: SessionDirectory): Promise<readonly SessionSummary[]> {
  try {
    return await directory.list();
  } catch (error) {
    throw new FleetgateError('CLUSTER_UNAVAILABLE', { cause: error });
  }
}

const statementProperties = {
  sid: { type: 'string', minLength: 1, maxLength: 128 },
  effect: { type: 'string', enum: ['allow', 'deny'] },
  actions: { type: 'array', minItems: 1, items: { type: 'string', enum: ['publish', 'subscribe', 'receive'] } },
  topics: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', maxLength: 65535 } },
} as const;
const statementSchema = { type: 'object', properties: statementProperties } as const;
const documentSchema = { type: 'object', properties: { statements: { type: 'array', items: statementSchema } } } as const;
const policySchema = { type: 'object', properties: { name: { type: 'string' }, version: { type: 'integer' }, updatedAt: dateTime, document: documentSchema } } as const;

const auditEntrySchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    at: dateTime,
    actor: { type: 'string' },
    action: { type: 'string' },
    result: { type: 'string', enum: ['ok', 'refused'] },
    code: nullable('string'),
    deviceId: nullable('string'),
    detail: { type: ['object', 'null'], additionalProperties: true },
  },
} as const;

const page = (items: object) => ({ type: 'object', properties: { items: { type: 'array', items }, next: { ...nullable('string'), description: 'pass as `after` for the next page' } } });
// A list answered whole: the same `{items, next}` shape as a page, with `next` always null.
const list = (items: object) => ({ type: 'object', properties: { items: { type: 'array', items }, next: { type: 'null', description: 'always null: the whole list is in this answer' } } });
// The audit trail is a feed, not a list: older entries are read with `until`, newer ones with `afterId`.
const feed = (items: object) => ({ type: 'object', properties: { items: { type: 'array', items } } });

const iso = (date: Date | null) => (date === null ? null : date.toISOString());
const deviceJson = (d: DeviceRecord) => ({ ...d, createdAt: iso(d.createdAt), updatedAt: iso(d.updatedAt) });
// Certificates are listed without their PEM bodies: the serial and fingerprint identify them, and a list of
// a busy device's renewals would otherwise be mostly base64.
const certificateJson = (c: CertificateRecord) => ({
  serial: c.serial,
  fingerprint: c.fingerprint,
  publicKeyHash: c.publicKeyHash,
  status: c.status,
  notBefore: iso(c.notBefore),
  notAfter: iso(c.notAfter),
  issuedAt: iso(c.issuedAt),
  revokedAt: iso(c.revokedAt),
  revocationReason: c.revocationReason,
  replaces: c.replaces,
});
const sessionJson = (s: SessionSummary) => ({ ...s, remoteAddress: s.remoteAddress ?? null, connectedAt: iso(s.connectedAt) });
const policyJson = (p: PolicyRecord) => ({ name: p.name, version: p.version, updatedAt: iso(p.updatedAt), document: p.document });
const auditJson = (e: AuditEntry) => ({
  id: e.id,
  at: iso(e.at),
  actor: e.actor,
  action: e.action,
  result: e.result,
  code: e.code ?? null,
  deviceId: e.deviceId ?? null,
  detail: e.detail ?? null,
});

function limitFrom(value: string | undefined): number {
  if (value === undefined) return 100;
  const limit = Number(value);
  if (limit < 1 || limit > 1000) throw new FleetgateError('REQUEST_INVALID', { message: 'limit must be between 1 and 1000.' });
  return limit;
}

interface IdentityQuery {
  status?: DeviceStatus;
  kind?: IdentityKind;
  template?: string;
  prefix?: string;
  after?: string;
  limit?: string;
}

const identityQueryProperties = {
  status: { type: 'string', enum: ['active', 'suspended', 'revoked'] },
  template: { type: 'string', maxLength: 128 },
  prefix: { type: 'string', maxLength: 128, description: 'ids starting with this (case-sensitive, no wildcards)' },
  after: { type: 'string', maxLength: 128, description: 'ids sorting after this one (the `next` of the previous page)' },
  limit: limitParam,
} as const;

/**
 * Fleet operations (README "HTTPS API"): devices and services, live sessions, policies,
 * revoke/suspend/resume and the audit trail. Authentication and the role check run in `onRequest`, before
 * the body is read or validated, so a caller without the right credentials learns nothing about the route
 * but 401/403. Handlers stay thin: the use-cases audit and publish.
 */
export function registerFleetRoutes(app: FastifyInstance, deps: FleetRouteDeps): void {
  const { registry, auth, events } = deps;
  const { allow, operatorOf } = routeGuard(auth);

  const listIdentities = async (query: IdentityQuery) => {
    const limit = limitFrom(query.limit);
    const items = await registry.listDevices({
      limit,
      ...(query.status ? { status: query.status } : {}),
      ...(query.kind ? { kind: query.kind } : {}),
      ...(query.template ? { template: query.template } : {}),
      ...(query.prefix ? { prefix: query.prefix } : {}),
      ...(query.after ? { after: query.after } : {}),
    });
    return { items: items.map(deviceJson), next: items.length === limit ? (items.at(-1)?.id ?? null) : null };
  };

  // ---- devices and services --------------------------------------------------------------------------

  app.get<{ Querystring: IdentityQuery }>(
    '/v1/devices',
    {
      onRequest: allow(readers),
      schema: {
        tags: ['fleet'],
        summary: 'List devices and services, by id, one page at a time',
        security,
        querystring: { type: 'object', additionalProperties: false, properties: { ...identityQueryProperties, kind: { type: 'string', enum: ['device', 'service'] } } },
        response: { 200: page(deviceSchema), ...errors },
      },
    },
    async (request) => listIdentities(request.query),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/devices/:id',
    {
      onRequest: allow(readers),
      schema: {
        tags: ['fleet'],
        summary: 'One device or service: its record, effective policy, certificates (without PEM) and live session',
        security,
        params: idParams,
        response: {
          200: {
            type: 'object',
            properties: {
              device: deviceSchema,
              effectivePolicy: { ...nullable('string'), description: 'the policy its sessions get; null if its template is gone' },
              certificates: { type: 'array', items: certificateSchema },
              session: { anyOf: [sessionSchema, { type: 'null' }] },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const id = assertDeviceId(request.params.id);
      const device = await registry.getDevice(id);
      if (device === undefined) throw new FleetgateError('DEVICE_NOT_FOUND', { detail: { id } });
      const [certificates, effectivePolicy] = await Promise.all([registry.listCertificates(id), effectivePolicyOf(device)]);
      // A claim session's client id is a serial, which may equal the id of the device it enrolled: skip it.
      const session = (await listSessions(deps.sessions)).find((s) => s.clientId === id && s.kind === 'device');
      return { device: deviceJson(device), effectivePolicy, certificates: certificates.map(certificateJson), session: session ? sessionJson(session) : null };
    },
  );

  // Manual registration (`fleetgate device create`): new identities are admin work, as for services below.
  app.post<{ Body: { id: string; csr: string; template?: string; policy?: string; attributes?: Record<string, string> } }>(
    '/v1/devices',
    {
      onRequest: allow(admins),
      schema: {
        tags: ['fleet'],
        summary: 'Register a device from a CSR (the key stays with the caller), without a claim',
        security,
        body: {
          type: 'object',
          required: ['id', 'csr'],
          additionalProperties: false,
          properties: {
            id: { type: 'string', maxLength: 128, description: 'device id: its MQTT client id (letters, digits, . _ : -)' },
            csr: { type: 'string', maxLength: 16_384, description: 'PKCS#10, PEM' },
            template: { type: 'string', maxLength: 128, description: 'registration template, default `default`' },
            policy: { type: 'string', maxLength: 128, description: 'policy override; default: the template policy' },
            attributes: { type: 'object', additionalProperties: { type: 'string' }, description: 'trusted attributes policies may read' },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: { id: { type: 'string' }, template: { type: 'string' }, ...issuedIdentity('device') },
          },
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const operator = operatorOf(request);
      const { id, csr, template, policy, attributes } = request.body;
      const record = await registerDevice(
        { registry, ...deps.issuing },
        { id, csr, actor: operator.actor, ...(template === undefined ? {} : { template }), ...(policy === undefined ? {} : { policy }), ...(attributes === undefined ? {} : { attributes }) },
      );
      const device = await registry.getDevice(record.deviceId);
      return reply.status(201).send({ id: record.deviceId, template: device?.template ?? template ?? 'default', ...issued(record, device) });
    },
  );

  /** The issuedIdentity answer for a certificate just registered. */
  const issued = (record: CertificateRecord, device: DeviceRecord | undefined) => ({
    policy: device?.policy ?? null,
    serial: record.serial,
    notAfter: iso(record.notAfter),
    certificate: record.pem,
    chain: deps.pem.deviceCa,
    ca: deps.pem.root,
  });

  const statusRoute = (action: StatusAction, summary: string, body: object) =>
    app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
      `/v1/devices/:id/${action}`,
      {
        onRequest: allow(actors),
        // `curl -X POST …/resume` sends no body at all; for these routes that means "no note", not a bad request.
        preValidation: async (request) => {
          if (action !== 'revoke' && request.body === undefined) request.body = {};
        },
        schema: { tags: ['fleet'], summary, security, params: idParams, body, response: { 200: deviceSchema, ...errors } },
      },
      async (request) => {
        const operator = operatorOf(request);
        const device = await changeDeviceStatus({ registry, events }, { id: request.params.id, action, reason: request.body?.reason ?? null, actor: operator.actor });
        return deviceJson(device);
      },
    );
  statusRoute('revoke', 'Revoke a device or service for good: certificates revoked, live session closed, reconnects refused', {
    type: 'object',
    required: ['reason'],
    additionalProperties: false,
    // Checked by the use-case, which explains a refused reason better than a schema enum would.
    properties: { reason: { type: 'string', maxLength: 64, description: `RFC 5280 reason: ${operatorRevocationReasons.join(', ')}` } },
  });
  statusRoute('suspend', 'Suspend a device or service: live session closed and reconnects refused until it is resumed', noteBody);
  statusRoute('resume', 'Resume a suspended device or service (a revoked one stays revoked)', noteBody);

  app.get<{ Querystring: Omit<IdentityQuery, 'kind'> }>(
    '/v1/services',
    {
      onRequest: allow(readers),
      schema: {
        tags: ['fleet'],
        summary: 'List service identities (backend applications)',
        security,
        querystring: { type: 'object', additionalProperties: false, properties: identityQueryProperties },
        response: { 200: page(deviceSchema), ...errors },
      },
    },
    async (request) => listIdentities({ ...request.query, kind: 'service' }),
  );

  app.post<{ Body: { name: string; policy?: string; csr: string } }>(
    '/v1/services',
    {
      onRequest: allow(admins),
      schema: {
        tags: ['fleet'],
        summary: 'Create a service identity from a CSR (the key stays with the caller); its client id is the name',
        security,
        body: {
          type: 'object',
          required: ['name', 'csr'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', maxLength: 128, description: 'same rules as a device id' },
            policy: { type: 'string', maxLength: 128, description: 'default `backend`' },
            csr: { type: 'string', maxLength: 16_384, description: 'PKCS#10, PEM' },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: { name: { type: 'string' }, ...issuedIdentity('service') },
          },
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const operator = operatorOf(request);
      const record = await registerService({ registry, ...deps.issuing }, { ...request.body, actor: operator.actor });
      return reply.status(201).send({ name: record.deviceId, ...issued(record, await registry.getDevice(record.deviceId)) });
    },
  );

  // ---- sessions --------------------------------------------------------------------------------------

  app.get<{ Querystring: { kind?: 'device' | 'claim' } }>(
    '/v1/sessions',
    {
      onRequest: allow(readers),
      schema: {
        tags: ['fleet'],
        summary: 'Live MQTT sessions on the broker(s) this API runs with',
        security,
        querystring: { type: 'object', additionalProperties: false, properties: { kind: { type: 'string', enum: ['device', 'claim'] } } },
        response: { 200: list(sessionSchema), ...errors },
      },
    },
    async (request) => {
      const { kind } = request.query;
      const sessions = (await listSessions(deps.sessions)).filter((s) => kind === undefined || s.kind === kind);
      return { items: sessions.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0)).map(sessionJson), next: null };
    },
  );

  // ---- policies --------------------------------------------------------------------------------------

  app.get(
    '/v1/policies',
    { onRequest: allow(readers), schema: { tags: ['policies'], summary: 'List policies', security, response: { 200: list(policySchema), ...errors } } },
    async () => ({ items: (await registry.listPolicies()).map(policyJson), next: null }),
  );

  app.get<{ Params: { name: string } }>(
    '/v1/policies/:name',
    { onRequest: allow(readers), schema: { tags: ['policies'], summary: 'One policy document with its version', security, params: policyNameParams, response: { 200: policySchema, ...errors } } },
    async (request) => policyJson(await getPolicy(request.params.name)),
  );

  app.put<{ Params: { name: string }; Body: unknown }>(
    '/v1/policies/:name',
    {
      onRequest: allow(admins),
      // A document the schema refuses is answered by parsePolicyDocument, which names the statement and
      // the problem, under the policy code (POLICY_INVALID) rather than the generic REQUEST_INVALID.
      attachValidation: true,
      schema: {
        tags: ['policies'],
        summary: 'Create or replace a policy; connected sessions using it get the new rules at once',
        security,
        params: policyNameParams,
        body: {
          type: 'object',
          required: ['statements'],
          additionalProperties: false,
          properties: {
            statements: {
              type: 'array',
              minItems: 1,
              maxItems: 256,
              items: { type: 'object', required: ['effect', 'actions', 'topics'], additionalProperties: false, properties: statementProperties },
            },
          },
        },
        response: { 200: policySchema, ...errors },
      },
    },
    async (request) => {
      const validation = request.validationError as (Error & { validationContext?: string }) | undefined;
      if (validation !== undefined && validation.validationContext !== 'body') throw validation;
      const operator = operatorOf(request);
      const { name } = request.params;
      const saved = await auditRefusals(registry, { actor: operator.actor, action: 'policy.put', detail: { policy: name } }, async () => {
        const document = parsePolicyDocument(request.body);
        if (validation !== undefined) throw new FleetgateError('POLICY_INVALID', { message: `The policy document is not valid: ${validation.message}.` });
        return registry.putPolicy(name, document, { actor: operator.actor, action: 'policy.put', result: 'ok', detail: { policy: name, statements: document.statements.length } });
      });
      // After the write, as for revocations: brokers re-read the policy when they hear of the change.
      await events.publish({ type: 'policy.changed', policy: name });
      return policyJson(saved);
    },
  );

  app.post<{ Params: { name: string }; Body: { deviceId: string; action: PolicyAction; topic: string } }>(
    '/v1/policies/:name/explain',
    {
      onRequest: allow(readers),
      schema: {
        tags: ['policies'],
        summary: 'Would this policy let this device publish, subscribe to or receive on this topic, and which statement decides?',
        security,
        params: policyNameParams,
        body: {
          type: 'object',
          required: ['deviceId', 'action', 'topic'],
          additionalProperties: false,
          properties: {
            deviceId: { type: 'string', maxLength: 128 },
            action: { type: 'string', enum: ['publish', 'subscribe', 'receive'] },
            topic: { type: 'string', maxLength: 65535, description: 'a topic name; a topic filter for subscribe' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              policy: { type: 'string' },
              version: { type: 'integer' },
              deviceId: { type: 'string' },
              deviceStatus: { type: 'string', enum: ['active', 'suspended', 'revoked'] },
              effectivePolicy: { ...nullable('string'), description: 'the policy the device actually gets, which may not be the one explained' },
              action: { type: 'string' },
              topic: { type: 'string' },
              allowed: { type: 'boolean' },
              code: { ...nullable('string'), description: 'the refusal code when not allowed' },
              effect: { type: ['string', 'null'], enum: ['allow', 'deny', 'no-match', null], description: 'null when the gateway decided before the policy ($-topics, invalid topics)' },
              statementIndex: nullable('integer'),
              pattern: { ...nullable('string'), description: 'the deciding topic filter with variables resolved' },
              statement: { anyOf: [statementSchema, { type: 'null' }] },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const { deviceId, action, topic } = request.body;
      const id = assertDeviceId(deviceId);
      const [policy, device] = await Promise.all([getPolicy(request.params.name), registry.getDevice(id)]);
      if (device === undefined) throw new FleetgateError('DEVICE_NOT_FOUND', { detail: { id } });
      const compiled = compilePolicy(policy.document, { id: device.id, template: device.template, attributes: device.attributes });
      // decideInScope, not the bare policy: "$"-topics and invalid topics are refused before any policy, as
      // the broker does, and explain must give the answer the broker would.
      const scoped = decideInScope({ kind: 'device', id: device.id, policy: compiled }, action, topic);
      const decision = scoped.decision;
      const index = decision?.statementIndex;
      return {
        policy: policy.name,
        version: policy.version,
        deviceId: device.id,
        deviceStatus: device.status,
        effectivePolicy: await effectivePolicyOf(device),
        action,
        topic,
        allowed: scoped.allowed,
        code: scoped.code ?? null,
        effect: decision?.effect ?? null,
        statementIndex: index ?? null,
        pattern: decision?.pattern ?? null,
        statement: index === undefined ? null : (policy.document.statements[index] ?? null),
      };
    },
  );

  // ---- audit -----------------------------------------------------------------------------------------

  app.get<{ Querystring: { deviceId?: string; actor?: string; action?: string; result?: 'ok' | 'refused'; since?: string; until?: string; afterId?: string; limit?: string } }>(
    '/v1/audit',
    {
      onRequest: allow(readers),
      schema: {
        tags: ['audit'],
        summary: 'Query the audit trail: newest first, or oldest first after `afterId` (to follow it)',
        security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            deviceId: { type: 'string', maxLength: 128 },
            actor: { type: 'string', maxLength: 256 },
            action: { type: 'string', maxLength: 128 },
            result: { type: 'string', enum: ['ok', 'refused'] },
            since: { ...dateTime, description: 'entries at or after this time' },
            until: { ...dateTime, description: 'entries before this time' },
            afterId: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'entries with a greater id, oldest first' },
            limit: limitParam,
          },
        },
        response: { 200: feed(auditEntrySchema), ...errors },
      },
    },
    async (request) => {
      const q = request.query;
      const entries = await registry.queryAudit({
        limit: limitFrom(q.limit),
        ...(q.deviceId ? { deviceId: q.deviceId } : {}),
        ...(q.actor ? { actor: q.actor } : {}),
        ...(q.action ? { action: q.action } : {}),
        ...(q.result ? { result: q.result } : {}),
        ...(q.since ? { since: new Date(q.since) } : {}),
        ...(q.until ? { until: new Date(q.until) } : {}),
        ...(q.afterId ? { afterId: Number(q.afterId) } : {}),
      });
      return { items: entries.map(auditJson) };
    },
  );

  async function getPolicy(name: string): Promise<PolicyRecord> {
    const policy = await registry.getPolicy(name);
    if (policy === undefined) throw new FleetgateError('POLICY_NOT_FOUND', { detail: { policy: name } });
    return policy;
  }

  async function effectivePolicyOf(device: DeviceRecord): Promise<string | null> {
    return effectivePolicyName(device, await registry.getTemplate(device.template));
  }
}
