import Fastify, { type RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayEvent, type PolicyDocument, systemClock } from '../../core/index.ts';
import { bootstrapTokenAuth, type OperatorRole } from '../../provisioning/index.ts';
import { registerFleetRoutes } from '../../provisioning/api/fleet-routes.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import { rolesOf, routeTable } from '../security/attack-table.ts';
import type { Device as DeviceJson, AuditEntry as AuditJson } from '../../contract/index.ts';

/**
 * Fleet operations over the API (`inject()` into the API `fleetgate serve` builds, on a real registry):
 * revocation is final, services get their own identity, policies are validated and explained, the audit
 * trail is queryable, and every route refuses missing credentials, wrong tokens and the wrong role. What
 * revocation and suspension do to live MQTT sessions is in api-and-broker.test.ts, over a whole gateway.
 */
let gw: ApiUnderTest;

beforeAll(async () => {
  gw = await startApiUnderTest();
});
afterAll(async () => {
  await gw?.close();
});

const call = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => gw.api<T>(method, path, { token: true, ...(body === undefined ? {} : { body }) });

describe('revoke, suspend, resume', () => {
  it('a revocation is final: resume and suspend are refused, revoking again is accepted and changes nothing', async () => {
    await gw.createDevice('fleet-rev-2');
    expect((await call('POST', '/v1/devices/fleet-rev-2/revoke', { reason: 'cessationOfOperation' })).status).toBe(200);
    const resumed = await call('POST', '/v1/devices/fleet-rev-2/resume');
    expect(resumed).toMatchObject({ status: 409, body: { code: 'DEVICE_REVOKED_FINAL', message: expect.stringMatching(/final/) } });
    expect(await call('POST', '/v1/devices/fleet-rev-2/suspend', { reason: 'x' })).toMatchObject({ status: 409, body: { code: 'DEVICE_REVOKED_FINAL' } });
    const again = await call<DeviceJson>('POST', '/v1/devices/fleet-rev-2/revoke', { reason: 'keyCompromise' });
    expect(again).toMatchObject({ status: 200, body: { status: 'revoked', statusReason: 'cessationOfOperation' } });
    await gw.waitForAudit({ deviceId: 'fleet-rev-2', action: 'device.resume', result: 'refused' }, (e) => e.code === 'DEVICE_REVOKED_FINAL');
  });

  it.each(['certificateHold', 'removeFromCRL', 'aACompromise', 'KeyCompromise', ''])('refuses the revocation reason "%s" and leaves the device active', async (reason) => {
    const id = `fleet-reason-${reason.toLowerCase() || 'empty'}`;
    await gw.createDevice(id);
    const refused = await call('POST', `/v1/devices/${id}/revoke`, { reason });
    expect(refused).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    expect((await gw.dataDir.registry.getDevice(id))?.status).toBe('active');
    await gw.waitForAudit({ deviceId: id, action: 'device.revoke', result: 'refused' });
  });

  it('refuses a revocation without a reason, with unknown fields, for an unknown device and for an invalid id', async () => {
    await gw.createDevice('fleet-rev-3');
    expect(await call('POST', '/v1/devices/fleet-rev-3/revoke', {})).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    expect(await call('POST', '/v1/devices/fleet-rev-3/revoke', { reason: 'superseded', force: true })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    expect(await call('POST', '/v1/devices/nobody-here/revoke', { reason: 'superseded' })).toMatchObject({ status: 404, body: { code: 'DEVICE_NOT_FOUND' } });
    expect(await call('POST', `/v1/devices/${encodeURIComponent('bad+id')}/revoke`, { reason: 'superseded' })).toMatchObject({ status: 400, body: { code: 'DEVICE_ID_INVALID' } });
    expect((await gw.dataDir.registry.getDevice('fleet-rev-3'))?.status).toBe('active');
  });

  it('refuses a multi-line suspension note', async () => {
    await gw.createDevice('fleet-sus-2');
    expect(await call('POST', '/v1/devices/fleet-sus-2/suspend', { reason: 'a\nb' })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
  });
});

describe('devices, sessions and services', () => {
  it('lists devices with filters and keyset paging, and refuses unknown or malformed query parameters', async () => {
    for (const id of ['fleet-list-a', 'fleet-list-b', 'fleet-list-c']) await gw.createDevice(id);
    await call('POST', '/v1/devices/fleet-list-b/suspend');
    const all = await call<{ items: DeviceJson[]; next: string | null }>('GET', '/v1/devices?prefix=fleet-list-');
    expect(all.body.items.map((d) => d.id)).toEqual(['fleet-list-a', 'fleet-list-b', 'fleet-list-c']);
    expect(all.body.next).toBeNull();
    expect(all.body.items[0]?.updatedAt).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
    const suspended = await call<{ items: DeviceJson[] }>('GET', '/v1/devices?prefix=fleet-list-&status=suspended');
    expect(suspended.body.items.map((d) => d.id)).toEqual(['fleet-list-b']);
    const first = await call<{ items: DeviceJson[]; next: string | null }>('GET', '/v1/devices?prefix=fleet-list-&limit=2');
    expect(first.body).toMatchObject({ items: [{ id: 'fleet-list-a' }, { id: 'fleet-list-b' }], next: 'fleet-list-b' });
    const second = await call<{ items: DeviceJson[] }>('GET', `/v1/devices?prefix=fleet-list-&limit=2&after=${first.body.next}`);
    expect(second.body.items.map((d) => d.id)).toEqual(['fleet-list-c']);

    for (const bad of ['?limit=0', '?limit=5000', '?limit=ten', '?status=gone', '?kind=claim', '?owner=me']) {
      expect(await call('GET', `/v1/devices${bad}`), bad).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    }
  });

  it('refuses a service with a taken name, an unknown policy, an invalid name or a bad CSR', async () => {
    await gw.createDevice('fleet-taken');
    const { csr } = await deviceKeyAndCsr('svc');
    expect(await call('POST', '/v1/services', { name: 'fleet-taken', csr })).toMatchObject({ status: 409, body: { code: 'DEVICE_EXISTS' } });
    expect(await call('POST', '/v1/services', { name: 'fleet-svc-2', policy: 'no-such-policy', csr })).toMatchObject({ status: 404, body: { code: 'POLICY_NOT_FOUND' } });
    expect(await call('POST', '/v1/services', { name: 'svc/#', csr })).toMatchObject({ status: 400, body: { code: 'DEVICE_ID_INVALID' } });
    expect(await call('POST', '/v1/services', { name: 'fleet-svc-3', csr: 'not a csr' })).toMatchObject({ status: 400, body: { code: 'PKI_CSR_MALFORMED' } });
    expect(await gw.dataDir.registry.getDevice('fleet-svc-2')).toBeUndefined();
  });
});

describe('policies', () => {
  const ownTopicsButSecrets: PolicyDocument = {
    statements: [
      { sid: 'own', effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] },
      { sid: 'no-secrets', effect: 'deny', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/secret/#'] },
      { sid: 'site', effect: 'allow', actions: ['subscribe', 'receive'], topics: ['sites/${device.attributes.site}/#'] },
    ],
  };

  it('lists and gets policies, saves a new version and announces it on the event bus', async () => {
    const list = await call<{ items: { name: string }[] }>('GET', '/v1/policies');
    expect(list.body.items.map((p) => p.name)).toEqual(expect.arrayContaining(['default', 'backend']));
    expect(await call('GET', '/v1/policies/default')).toMatchObject({ status: 200, body: { name: 'default', version: 1, document: { statements: [{ sid: 'own-topics' }] } } });
    expect(await call('GET', '/v1/policies/nope')).toMatchObject({ status: 404, body: { code: 'POLICY_NOT_FOUND' } });

    const seen: GatewayEvent[] = [];
    const unsubscribe = gw.events.subscribe((event) => seen.push(event));
    try {
      expect(await call('PUT', '/v1/policies/fleet-explain', ownTopicsButSecrets)).toMatchObject({ status: 200, body: { name: 'fleet-explain', version: 1 } });
      expect(await call('PUT', '/v1/policies/fleet-explain', ownTopicsButSecrets)).toMatchObject({ status: 200, body: { version: 2, document: ownTopicsButSecrets } });
    } finally {
      unsubscribe();
    }
    expect(seen.filter((e) => e.type === 'policy.changed')).toEqual([
      { type: 'policy.changed', policy: 'fleet-explain' },
      { type: 'policy.changed', policy: 'fleet-explain' },
    ]);
    await gw.waitForAudit({ action: 'policy.put', result: 'ok' }, (e) => e.detail?.policy === 'fleet-explain');
  });

  it.each([
    ['a wildcard in the middle', { statements: [{ effect: 'allow', actions: ['publish'], topics: ['devices/#/x'] }] }],
    ['an unknown variable', { statements: [{ effect: 'allow', actions: ['publish'], topics: ['devices/${device.owner}'] }] }],
    ['an unknown effect', { statements: [{ effect: 'maybe', actions: ['publish'], topics: ['a'] }] }],
    ['an unknown action', { statements: [{ effect: 'allow', actions: ['connect'], topics: ['a'] }] }],
    ['an unknown statement field', { statements: [{ effect: 'allow', actions: ['publish'], topics: ['a'], condition: {} }] }],
    ['an unknown document field', { statements: [{ effect: 'allow', actions: ['publish'], topics: ['a'] }], version: 3 }],
    ['no statements', { statements: [] }],
    ['no document', []],
  ])('refuses a policy with %s as POLICY_INVALID and keeps the old version', async (_name, document) => {
    const before = await gw.dataDir.registry.getPolicy('default');
    expect(await call('PUT', '/v1/policies/default', document)).toMatchObject({ status: 400, body: { code: 'POLICY_INVALID' } });
    expect((await gw.dataDir.registry.getPolicy('default'))?.version).toBe(before?.version);
  });

  it('refuses an invalid policy name as a bad request', async () => {
    expect(await call('PUT', `/v1/policies/${encodeURIComponent('a b')}`, ownTopicsButSecrets)).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
  });

  it('explains a decision with the statement that made it, for the device it is asked about', async () => {
    await call('PUT', '/v1/policies/fleet-explain', ownTopicsButSecrets);
    await gw.createDevice('fleet-exp-1', { attributes: { site: 'north' } });
    const explain = (action: string, topic: string, policy = 'fleet-explain') => call<Record<string, unknown>>('POST', `/v1/policies/${policy}/explain`, { deviceId: 'fleet-exp-1', action, topic });

    expect((await explain('publish', 'devices/fleet-exp-1/telemetry')).body).toMatchObject({
      allowed: true,
      effect: 'allow',
      statementIndex: 0,
      pattern: 'devices/fleet-exp-1/#',
      statement: { sid: 'own', effect: 'allow' },
      policy: 'fleet-explain',
      effectivePolicy: 'default',
      deviceStatus: 'active',
    });
    expect((await explain('publish', 'devices/fleet-exp-1/secret/key')).body).toMatchObject({ allowed: false, code: 'ACL_PUBLISH_DENIED', effect: 'deny', statementIndex: 1, statement: { sid: 'no-secrets' } });
    // Deny wins for a filter that could reach a denied topic, even though "own" covers it.
    expect((await explain('subscribe', 'devices/fleet-exp-1/#')).body).toMatchObject({ allowed: false, code: 'ACL_SUBSCRIBE_DENIED', statementIndex: 1 });
    expect((await explain('receive', 'sites/north/alerts')).body).toMatchObject({ allowed: true, statementIndex: 2, pattern: 'sites/north/#' });
    expect((await explain('publish', 'devices/other/telemetry')).body).toMatchObject({ allowed: false, effect: 'no-match', statementIndex: null, statement: null });
    expect((await explain('publish', '$SYS/broker')).body).toMatchObject({ allowed: false, code: 'ACL_RESERVED_TOPIC', effect: null });
    expect((await explain('publish', 'devices/+/x')).body).toMatchObject({ allowed: false, code: 'TOPIC_INVALID' });
    expect((await explain('publish', 'devices/fleet-exp-1/x', 'default')).body).toMatchObject({ allowed: true, policy: 'default', statement: { sid: 'own-topics' } });

    expect(await call('POST', '/v1/policies/fleet-explain/explain', { deviceId: 'fleet-nobody', action: 'publish', topic: 'a' })).toMatchObject({ status: 404, body: { code: 'DEVICE_NOT_FOUND' } });
    expect(await call('POST', '/v1/policies/nope/explain', { deviceId: 'fleet-exp-1', action: 'publish', topic: 'a' })).toMatchObject({ status: 404, body: { code: 'POLICY_NOT_FOUND' } });
    expect(await call('POST', '/v1/policies/fleet-explain/explain', { deviceId: 'fleet-exp-1', action: 'connect', topic: 'a' })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
  });
});

describe('audit', () => {
  it('filters by device, actor, action, result and time, and follows by id', async () => {
    await gw.createDevice('fleet-aud-1');
    await call('POST', '/v1/devices/fleet-aud-1/suspend', { reason: 'audit test' });
    await call('POST', '/v1/devices/fleet-aud-1/resume');
    await call('POST', '/v1/devices/fleet-aud-1/revoke', { reason: 'bogus' });

    const forDevice = await call<{ items: AuditJson[] }>('GET', '/v1/audit?deviceId=fleet-aud-1');
    expect(forDevice.status).toBe(200);
    // Newest first.
    expect(forDevice.body.items.map((e) => `${e.action} ${e.result}`)).toEqual(['device.revoke refused', 'device.resume ok', 'device.suspend ok', 'device.register ok']);
    const ids = forDevice.body.items.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(forDevice.body.items[0]).toMatchObject({ code: 'REQUEST_INVALID', actor: 'operator:admin', at: expect.stringMatching(/Z$/) });

    const refused = await call<{ items: AuditJson[] }>('GET', '/v1/audit?deviceId=fleet-aud-1&result=refused');
    expect(refused.body.items.map((e) => e.action)).toEqual(['device.revoke']);
    const suspends = await call<{ items: AuditJson[] }>('GET', '/v1/audit?action=device.suspend&actor=operator:admin&deviceId=fleet-aud-1');
    expect(suspends.body.items).toEqual([expect.objectContaining({ detail: expect.objectContaining({ reason: 'audit test', from: 'active', to: 'suspended' }) })]);
    expect((await call<{ items: AuditJson[] }>('GET', '/v1/audit?deviceId=fleet-aud-1&limit=1')).body.items).toHaveLength(1);

    const oldest = Math.min(...ids);
    const following = await call<{ items: AuditJson[] }>('GET', `/v1/audit?deviceId=fleet-aud-1&afterId=${oldest}`);
    expect(following.body.items.map((e) => e.action)).toEqual(['device.suspend', 'device.resume', 'device.revoke']);

    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await call<{ items: AuditJson[] }>('GET', `/v1/audit?deviceId=fleet-aud-1&since=${future}`)).body.items).toEqual([]);
    expect((await call<{ items: AuditJson[] }>('GET', `/v1/audit?deviceId=fleet-aud-1&until=${future}`)).body.items).toHaveLength(4);

    for (const bad of ['?since=yesterday', '?afterId=-1', '?result=maybe', '?limit=0', '?device=fleet-aud-1']) {
      expect(await call('GET', `/v1/audit${bad}`), bad).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    }
  });
});

describe('authentication and roles on every fleet route', () => {
  // The routes and their roles come from the one role table, test/security/attack-table.ts. Bodies are
  // deliberately invalid: credentials and role are checked before the body is even read.
  const routes = routeTable
    .filter((route) => route.module === 'provisioning/api/fleet-routes.ts')
    .map((route) => ({ method: route.method, url: route.url, path: route.path, allowed: rolesOf(route.method, route.url) }));
  const roles: readonly OperatorRole[] = ['admin', 'operator', 'station', 'viewer'];
  const invalidBody = { bogus: true };

  const registered: RouteOptions[] = [];
  /** Each role's Bearer token: the bootstrap admin token, and personal tokens made through POST /v1/tokens. */
  const tokens = new Map<OperatorRole, string>();

  beforeAll(async () => {
    // Only to see what registerFleetRoutes adds (no request is made here): every call below goes to the
    // real API, with its real auth, role guard and error mapping.
    const probe = Fastify();
    probe.addHook('onRoute', (route) => {
      registered.push(route);
    });
    const { registry, authorities, adminToken } = gw.dataDir;
    registerFleetRoutes(probe, {
      registry,
      auth: bootstrapTokenAuth(adminToken),
      events: gw.events,
      sessions: { list: async () => [] },
      issuing: { authorities, clock: systemClock },
    });
    await probe.ready();
    await probe.close();
    tokens.set('admin', adminToken);
    for (const role of roles.filter((r) => r !== 'admin')) {
      const created = await gw.api<{ token: string }>('POST', '/v1/tokens', { token: true, body: { name: `fleet-role-${role}`, role } });
      expect(created.status).toBe(201);
      tokens.set(role, created.body.token);
    }
  });

  const inject = (route: (typeof routes)[number], authorization?: string) =>
    gw.app.inject({
      method: route.method,
      url: route.path,
      headers: authorization === undefined ? {} : { authorization },
      ...(route.method === 'GET' ? {} : { payload: invalidBody }),
    });

  it('the table covers every route registerFleetRoutes adds, and each is documented and strict', () => {
    const added = registered.filter((r) => r.method !== 'HEAD');
    expect(added.map((r) => `${String(r.method)} ${r.url}`).sort()).toEqual(routes.map((r) => `${r.method} ${r.url}`).sort());
    for (const route of added) {
      const schema = route.schema as Record<string, { additionalProperties?: unknown } & Record<string, unknown>> & { tags?: unknown; security?: unknown; response?: Record<string, unknown> };
      const where = `${String(route.method)} ${route.url}`;
      expect(schema.tags, where).toEqual(expect.arrayContaining([expect.any(String)]));
      expect(schema.security, where).toEqual([{ bearer: [] }]);
      expect(Object.keys(schema.response ?? {}).some((status) => /^2\d\d$/.test(status)), where).toBe(true);
      for (const part of ['body', 'querystring', 'params'] as const) {
        if (schema[part] !== undefined) expect(schema[part]?.additionalProperties, `${where} ${part}`).toBe(false);
      }
      if (route.method !== 'GET') expect(schema.body, `${where} body`).toBeDefined();
      expect(route.onRequest, `${where} guard`).toBeDefined();
    }
  });

  it.each(routes)('$method $url: 401 without a token and with a wrong token', async (route) => {
    expect((await inject(route)).json()).toMatchObject({ code: 'API_UNAUTHENTICATED' });
    expect((await inject(route)).statusCode).toBe(401);
    const wrong = await inject(route, 'Bearer not-the-admin-token');
    expect([wrong.statusCode, wrong.json()]).toEqual([401, expect.objectContaining({ code: 'API_UNAUTHENTICATED' })]);
    const malformed = await inject(route, 'Basic YWRtaW46YWRtaW4=');
    expect(malformed.statusCode).toBe(401);
    expect(await gw.api(route.method, route.path, route.method === 'GET' ? {} : { body: invalidBody })).toMatchObject({ status: 401, body: { code: 'API_UNAUTHENTICATED' } });
    expect(await gw.api(route.method, route.path, { token: 'wrong', ...(route.method === 'GET' ? {} : { body: invalidBody }) })).toMatchObject({ status: 401 });
  });

  it.each(routes)('$method $url: 403 API_FORBIDDEN for every role not allowed, and no refusal for those allowed', async (route) => {
    for (const role of roles) {
      const response = await inject(route, `Bearer ${tokens.get(role)}`);
      if (route.allowed.includes(role)) {
        expect([401, 403], `${role} ${route.method} ${route.path}`).not.toContain(response.statusCode);
      } else {
        expect([response.statusCode, response.json()], `${role} ${route.method} ${route.path}`).toEqual([403, expect.objectContaining({ code: 'API_FORBIDDEN' })]);
      }
    }
  });
});
