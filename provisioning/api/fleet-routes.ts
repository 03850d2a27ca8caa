import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  assertDeviceId,
  type Clock,
  compilePolicy,
  decideInScope,
  effectivePolicyName,
  type EventBus,
  FleetgateError,
  parsePolicyDocument,
  type RevocationUrls,
  type SessionDirectory,
  type SessionSummary,
} from '../../core/index.ts';
import type { AuditEntry as AuditEntryJson, Certificate, Device, DeviceQuery, Policy, Session } from '../../contract/index.ts';
import { fleetSchemas as schemas, listLimit } from '../../contract/index.ts';
import type { AuditEntry, CertificateRecord, DeviceRecord, PolicyRecord, Registry } from '../../registry/index.ts';
import type { CertificateAuthorities } from '../certificate-authorities.ts';
import { auditRefusals } from '../audited.ts';
import { registerDevice } from '../register-device.ts';
import { registerService } from '../register-service.ts';
import { changeDeviceStatus, type StatusAction } from '../revoke-device.ts';
import { type OperatorAuth, type OperatorRole, routeGuard } from './operator-auth.ts';

export interface FleetRouteDeps {
  readonly registry: Registry;
  readonly auth: OperatorAuth;
  readonly events: EventBus;
  readonly sessions: SessionDirectory;
  /** For service certificates: the device-issuing CA signs them, with the CRL and OCSP URLs of the API. */
  readonly issuing: { readonly authorities: Pick<CertificateAuthorities, 'issuer' | 'chainFor' | 'rootsPem'>; readonly clock: Clock; readonly revocation?: RevocationUrls };
}

// Who may call what (docs/THREAT-MODEL.md R6): operators act on identities and read; viewers only read; policies and new
// service identities are admin work. Stations have their own routes (claims, allow-lists) and none here.
const readers: readonly OperatorRole[] = ['admin', 'operator', 'viewer'];
const actors: readonly OperatorRole[] = ['admin', 'operator'];
const admins: readonly OperatorRole[] = ['admin'];

/** A cluster's session list lives in Redis; when that is out of reach the API says so instead of a bare 500. */
async function listSessions(directory: SessionDirectory): Promise<readonly SessionSummary[]> {
  try {
    return await directory.list();
  } catch (error) {
    throw new FleetgateError('CLUSTER_UNAVAILABLE', { cause: error });
  }
}

function iso(date: Date): string;
function iso(date: Date | null): string | null;
function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString();
}
const deviceJson = (d: DeviceRecord): Device => ({ ...d, createdAt: iso(d.createdAt), updatedAt: iso(d.updatedAt) });
// Certificates are listed without their PEM bodies: the serial and fingerprint identify them, and a list of
// a busy device's renewals would otherwise be mostly base64.
const certificateJson = (c: CertificateRecord): Certificate => ({
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
const sessionJson = (s: SessionSummary): Session => ({ ...s, remoteAddress: s.remoteAddress ?? null, connectedAt: iso(s.connectedAt) });
const policyJson = (p: PolicyRecord): Policy => ({ name: p.name, version: p.version, updatedAt: iso(p.updatedAt), document: p.document });
const auditJson = (e: AuditEntry): AuditEntryJson => ({
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
  if (value === undefined) return listLimit.default;
  const limit = Number(value);
  if (limit < listLimit.min || limit > listLimit.max) throw new FleetgateError('REQUEST_INVALID', { message: `limit must be between ${listLimit.min} and ${listLimit.max}.` });
  return limit;
}

/**
 * Fleet operations (README "HTTPS API"): devices and services, live sessions, policies,
 * revoke/suspend/resume and the audit trail. Parameters, bodies and answers are the contract's
 * (contract/fleet.ts), so the handlers are typed by the schemas that validate them. Authentication and the
 * role check run in `onRequest`, before the body is read or validated, so a caller without the right
 * credentials learns nothing about the route but 401/403. Handlers stay thin: the use-cases audit and publish.
 */
export function registerFleetRoutes(fastify: FastifyInstance, deps: FleetRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { registry, auth, events } = deps;
  const { allow, operatorOf } = routeGuard(auth);

  const listIdentities = async (query: DeviceQuery) => {
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

  app.get('/v1/devices', { onRequest: allow(readers), schema: schemas.listDevices }, async (request) => listIdentities(request.query));

  app.get(
    '/v1/devices/:id',
    { onRequest: allow(readers), schema: schemas.getDevice },
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
  app.post(
    '/v1/devices',
    { onRequest: allow(admins), schema: schemas.createDevice },
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
    // The issuing CA then its root, and every trusted root (both, during a root rotation).
    chain: deps.issuing.authorities.chainFor(record.issuerCa),
    ca: deps.issuing.authorities.rootsPem(),
  });

  const statusRoute = (action: StatusAction) =>
    app.post(
      `/v1/devices/:id/${action}`,
      {
        onRequest: allow(actors),
        // `curl -X POST …/resume` sends no body at all; for these routes that means "no note", not a bad request.
        preValidation: async (request) => {
          if (action !== 'revoke' && request.body === undefined) request.body = {};
        },
        schema: schemas[action],
      },
      async (request) => {
        const operator = operatorOf(request);
        const device = await changeDeviceStatus({ registry, events }, { id: request.params.id, action, reason: request.body?.reason ?? null, actor: operator.actor });
        return deviceJson(device);
      },
    );
  statusRoute('revoke');
  statusRoute('suspend');
  statusRoute('resume');

  app.get('/v1/services', { onRequest: allow(readers), schema: schemas.listServices }, async (request) => listIdentities({ ...request.query, kind: 'service' }));

  app.post(
    '/v1/services',
    { onRequest: allow(admins), schema: schemas.createService },
    async (request, reply) => {
      const operator = operatorOf(request);
      const record = await registerService({ registry, ...deps.issuing }, { ...request.body, actor: operator.actor });
      return reply.status(201).send({ name: record.deviceId, ...issued(record, await registry.getDevice(record.deviceId)) });
    },
  );

  // ---- sessions --------------------------------------------------------------------------------------

  app.get(
    '/v1/sessions',
    { onRequest: allow(readers), schema: schemas.listSessions },
    async (request) => {
      const { kind } = request.query;
      const sessions = (await listSessions(deps.sessions)).filter((s) => kind === undefined || s.kind === kind);
      return { items: sessions.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0)).map(sessionJson), next: null };
    },
  );

  // ---- policies --------------------------------------------------------------------------------------

  app.get('/v1/policies', { onRequest: allow(readers), schema: schemas.listPolicies }, async () => ({ items: (await registry.listPolicies()).map(policyJson), next: null }));

  app.get('/v1/policies/:name', { onRequest: allow(readers), schema: schemas.getPolicy }, async (request) => policyJson(await getPolicy(request.params.name)));

  app.put(
    '/v1/policies/:name',
    {
      onRequest: allow(admins),
      // A document the schema refuses is answered by parsePolicyDocument, which names the statement and
      // the problem, under the policy code (POLICY_INVALID) rather than the generic REQUEST_INVALID.
      attachValidation: true,
      schema: schemas.putPolicy,
    },
    async (request) => {
      const validation = request.validationError as (Error & { validationContext?: string }) | undefined;
      if (validation !== undefined && validation.validationContext !== 'body') throw validation;
      const operator = operatorOf(request);
      const { name } = request.params;
      const saved = await auditRefusals(registry, { actor: operator.actor, action: 'policy.put', detail: { policy: name } }, async () => {
        // With the validation error attached, the body may be anything: parsePolicyDocument reads it as unknown.
        const document = parsePolicyDocument(request.body as unknown);
        if (validation !== undefined) throw new FleetgateError('POLICY_INVALID', { message: `The policy document is not valid: ${validation.message}.` });
        return registry.putPolicy(name, document, { actor: operator.actor, action: 'policy.put', result: 'ok', detail: { policy: name, statements: document.statements.length } });
      });
      // After the write, as for revocations: brokers re-read the policy when they hear of the change.
      await events.publish({ type: 'policy.changed', policy: name });
      return policyJson(saved);
    },
  );

  app.post(
    '/v1/policies/:name/explain',
    { onRequest: allow(readers), schema: schemas.explainPolicy },
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

  app.get(
    '/v1/audit',
    { onRequest: allow(readers), schema: schemas.audit },
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
