import Database from 'better-sqlite3';
import { Command } from 'commander';
import Fastify, { type FastifyInstance } from 'fastify';
import { existsSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { errorCatalogue, isFleetgateError } from '../../core/index.ts';
import { operatorTokenHash, tokenAuth } from '../../provisioning/api/operator-auth.ts';
import { registerSecurityRoutes } from '../../provisioning/api/security-routes.ts';
import type { OperatorRole } from '../../registry/index.ts';
import { type ApiResponse, apiRequest } from '../../cli/api-client.ts';
import { withOperatorOptions } from '../../cli/operator-context.ts';
import { registerAuditVerifyCommand, registerTokenCommands } from '../../cli/token-commands.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { rolesOf } from '../security/attack-table.ts';

/**
 * Personal operator tokens and the audit chain check over HTTPS, with the real registry of a running test
 * gateway. Until build-api.ts registers these routes (and serve.ts uses tokenAuth), they run on a Fastify
 * instance built here on the gateway's registry and server certificate; once the gateway serves them,
 * the same tests run against it.
 */

interface SecurityApi {
  readonly baseUrl: string;
  call<T = unknown>(method: string, path: string, options?: { token?: string | true; body?: unknown; authorization?: string }): Promise<ApiResponse<T>>;
  close(): Promise<void>;
}

let gw: TestGateway;
let api: SecurityApi;

beforeAll(async () => {
  gw = await startTestGateway();
  api = await startSecurityApi(gw);
});

afterAll(async () => {
  await api?.close();
  await gw?.close();
});

async function startSecurityApi(gateway: TestGateway): Promise<SecurityApi> {
  const { pki, registry, adminToken } = gateway.gateway.dataDir;
  const request = (port: number) =>
    async function call<T>(method: string, path: string, options: { token?: string | true; body?: unknown; authorization?: string } = {}) {
      const token = options.token === true ? adminToken : options.token;
      const client = { baseUrl: `https://127.0.0.1:${port}`, ca: pki.pem.root, ...(token ? { token } : {}) };
      if (options.authorization === undefined) return apiRequest<T>(client, method, path, options.body);
      // A raw Authorization header, for the malformed cases the client would never send.
      return new Promise<ApiResponse<T>>((resolve, reject) => {
        const req = httpsRequest(new URL(path, client.baseUrl), { method, ca: client.ca, headers: { authorization: options.authorization } }, (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : text) as T, headers: res.headers }));
        });
        req.on('error', reject);
        req.end();
      });
    };

  const probe = await gateway.api('GET', '/v1/audit/verify', { token: true });
  if (probe.status !== 404) return { baseUrl: `https://127.0.0.1:${gateway.apiPort}`, call: request(gateway.apiPort), close: async () => {} };

  const app = Fastify({
    https: { cert: pki.server.cert, key: pki.server.key, minVersion: 'TLSv1.2' },
    // As build-api.ts: no type coercion, unknown fields kept (and so refused by the schemas).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  }) as unknown as FastifyInstance;
  // The mapping build-api.ts installs, minus its audit write (these routes audit their own refusals).
  app.setErrorHandler(async (error, _request, reply) => {
    if (isFleetgateError(error)) return reply.status(error.httpStatus).send({ code: error.code, message: error.message });
    const { statusCode, validation } = error as { statusCode?: number; validation?: unknown };
    if (validation !== undefined || (statusCode !== undefined && statusCode >= 400 && statusCode < 500)) {
      return reply.status(statusCode ?? 400).send({ code: 'REQUEST_INVALID', message: errorCatalogue.REQUEST_INVALID.message });
    }
    return reply.status(500).send({ code: 'INTERNAL', message: errorCatalogue.INTERNAL.message });
  });
  registerSecurityRoutes(app, { registry, auth: tokenAuth({ adminToken, registry }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return { baseUrl: `https://127.0.0.1:${port}`, call: request(port), close: () => app.close() };
}

let names = 0;
/** A fresh personal token with `role`, created by the bootstrap admin. */
async function createToken(role: OperatorRole, prefix: string = role): Promise<{ name: string; token: string }> {
  const name = `${prefix}-${(names += 1)}`;
  const response = await api.call<{ name: string; token: string }>('POST', '/v1/tokens', { token: true, body: { name, role } });
  expect(response.status).toBe(201);
  return { name, token: response.body.token };
}

describe('operator tokens', () => {
  it('shows a new token once, prefixed fgt_ with 256 random bits, not to be cached', async () => {
    const response = await api.call<{ name: string; role: string; token: string; createdAt: string }>('POST', '/v1/tokens', { token: true, body: { name: 'alice', role: 'operator' } });
    expect(response.status).toBe(201);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.body).toEqual({ name: 'alice', role: 'operator', token: expect.stringMatching(/^fgt_[A-Za-z0-9_-]{43}$/), createdAt: expect.any(String) });

    // It works at once, with its role: operators may check the audit trail but not manage tokens.
    expect((await api.call('GET', '/v1/audit/verify', { token: response.body.token })).status).toBe(200);
    expect((await api.call('GET', '/v1/tokens', { token: response.body.token })).body).toMatchObject({ code: 'API_FORBIDDEN' });

    const listed = await api.call<{ items: Record<string, unknown>[] }>('GET', '/v1/tokens', { token: true });
    expect(listed.status).toBe(200);
    expect(listed.body.items).toContainEqual({ name: 'alice', role: 'operator', createdAt: response.body.createdAt, revokedAt: null });
    // Neither the token nor its hash is ever listed.
    expect(JSON.stringify(listed.body)).not.toContain(response.body.token.slice(4));
    expect(JSON.stringify(listed.body)).not.toContain(operatorTokenHash(response.body.token));
  });

  it('never stores a token in clear: the database holds its SHA-256 only', async () => {
    const { token } = await createToken('viewer');
    const dbPath = join(gw.dataDirPath, 'fleetgate.db');
    // WAL mode: recent writes may still be in the -wal file rather than the main file.
    const bytes = Buffer.concat([dbPath, `${dbPath}-wal`].filter((path) => existsSync(path)).map((path) => readFileSync(path)));
    expect(bytes.includes(operatorTokenHash(token))).toBe(true); // we are looking in the right place
    expect(bytes.includes(token)).toBe(false);
    expect(bytes.includes(token.slice(4))).toBe(false);
    expect(bytes.includes(Buffer.from(token.slice(4), 'base64url'))).toBe(false);
  });

  // Who may call each route comes from the one role table, test/security/attack-table.ts.
  const routes: { method: string; path: string; body?: unknown; allowed: readonly string[] }[] = [
    { method: 'POST', path: '/v1/tokens', body: { name: 'made-by-role-test', role: 'viewer' }, allowed: rolesOf('POST', '/v1/tokens') },
    { method: 'GET', path: '/v1/tokens', allowed: rolesOf('GET', '/v1/tokens') },
    { method: 'POST', path: '/v1/tokens/nobody/revoke', allowed: rolesOf('POST', '/v1/tokens/:name/revoke') },
    { method: 'GET', path: '/v1/audit/verify', allowed: rolesOf('GET', '/v1/audit/verify') },
    { method: 'GET', path: '/v1/whoami', allowed: rolesOf('GET', '/v1/whoami') },
  ];

  describe.each(routes)('$method $path', (route) => {
    it.each(['admin', 'operator', 'station', 'viewer'] as const)('as %s', async (role) => {
      const { token } = await createToken(role);
      const body = route.body === undefined ? undefined : { ...(route.body as object), name: `by-${role}-${(names += 1)}` };
      const response = await api.call<{ code?: string }>(route.method, route.path, { token, body });
      if (route.allowed.includes(role)) {
        expect(response.body.code).not.toBe('API_FORBIDDEN');
        expect(response.status).not.toBe(401);
      } else {
        expect(response.status).toBe(403);
        expect(response.body.code).toBe('API_FORBIDDEN');
      }
    });

    it('refuses a missing, malformed or unknown credential with 401', async () => {
      for (const authorization of [undefined, 'Basic YWRtaW46YWRtaW4=', 'Bearer', 'Bearer fgt_not-a-real-token', `Bearer ${'x'.repeat(43)}`]) {
        const response =
          authorization === undefined ? await api.call<{ code: string }>(route.method, route.path, { body: route.body }) : await api.call<{ code: string }>(route.method, route.path, { authorization });
        expect(response.status, String(authorization)).toBe(401);
        expect(response.body.code).toBe('API_UNAUTHENTICATED');
      }
    });
  });

  it('tells each caller its own name and role (GET /v1/whoami)', async () => {
    expect(await api.call('GET', '/v1/whoami', { token: true })).toMatchObject({ status: 200, body: { name: 'admin', role: 'admin' } });
    const { name, token } = await createToken('viewer', 'who');
    expect(await api.call('GET', '/v1/whoami', { token })).toMatchObject({ status: 200, body: { name, role: 'viewer' } });
  });

  it('gives a viewer 403 on a mutating route and changes nothing, even with a body that would not validate', async () => {
    const { token } = await createToken('viewer');
    const before = await gw.gateway.dataDir.registry.listOperatorTokens();
    const create = await api.call<{ code: string }>('POST', '/v1/tokens', { token, body: { name: 'sneaky', role: 'admin' } });
    expect(create).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    // Authorisation runs before validation: the caller learns nothing about the route's body.
    const invalid = await api.call<{ code: string }>('POST', '/v1/tokens', { token, body: { surprise: true } });
    expect(invalid).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    const revoke = await api.call<{ code: string }>('POST', '/v1/tokens/alice/revoke', { token });
    expect(revoke).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    expect(await gw.gateway.dataDir.registry.listOperatorTokens()).toEqual(before);
  });

  it('refuses a revoked token with 401 from the moment it is revoked, and audits creation and revocation', async () => {
    const admin = await createToken('admin', 'second-admin');
    const { name, token } = await createToken('operator', 'leaked');
    expect((await api.call('GET', '/v1/audit/verify', { token })).status).toBe(200);

    const revoked = await api.call<{ name: string; role: string; revokedAt: string | null }>('POST', `/v1/tokens/${name}/revoke`, { token: admin.token });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ name, role: 'operator', revokedAt: expect.any(String) });

    const refused = await api.call<{ code: string }>('GET', '/v1/audit/verify', { token });
    expect(refused).toMatchObject({ status: 401, body: { code: 'API_UNAUTHENTICATED' } });
    // Revoking again is harmless and keeps the first date.
    const again = await api.call<{ revokedAt: string }>('POST', `/v1/tokens/${name}/revoke`, { token: true });
    expect(again.body.revokedAt).toBe(revoked.body.revokedAt);

    const { registry } = gw.gateway.dataDir;
    expect(await registry.queryAudit({ action: 'token.create', actor: 'operator:admin' })).toContainEqual(
      expect.objectContaining({ result: 'ok', detail: { name, role: 'operator' } }),
    );
    expect((await registry.queryAudit({ action: 'token.revoke' })).filter((entry) => entry.detail?.name === name)).toEqual([
      expect.objectContaining({ actor: 'operator:admin', result: 'ok', detail: { name, role: 'operator', alreadyRevoked: true } }),
      expect.objectContaining({ actor: `operator:${admin.name}`, result: 'ok', detail: { name, role: 'operator', alreadyRevoked: false } }),
    ]);
    // No token (nor its hash) ever reaches the audit trail.
    const trail = JSON.stringify(await registry.queryAudit({ limit: 1000 }));
    expect(trail).not.toContain(token);
    expect(trail).not.toContain(operatorTokenHash(token));
  });

  it('refuses a duplicate name, the reserved name admin, unknown roles and unknown fields, and audits the refusal', async () => {
    const { name } = await createToken('station', 'dup');
    const duplicate = await api.call<{ code: string; message: string }>('POST', '/v1/tokens', { token: true, body: { name, role: 'viewer' } });
    expect(duplicate).toMatchObject({ status: 409, body: { code: 'OPERATOR_TOKEN_EXISTS', message: expect.stringContaining('exists') } });
    expect(await gw.gateway.dataDir.registry.queryAudit({ action: 'token.create', result: 'refused' })).toContainEqual(
      expect.objectContaining({ actor: 'operator:admin', code: 'OPERATOR_TOKEN_EXISTS', detail: expect.objectContaining({ name, role: 'viewer' }) }),
    );

    for (const body of [{ name: 'admin', role: 'viewer' }, { name: 'x', role: 'root' }, { name: 'a/b', role: 'viewer' }, { name: 'x', role: 'viewer', token: 'mine' }, { name: 'x' }]) {
      const response = await api.call<{ code: string }>('POST', '/v1/tokens', { token: true, body });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.code).toBe('REQUEST_INVALID');
    }
    expect(await api.call('POST', '/v1/tokens/ghost/revoke', { token: true })).toMatchObject({ status: 404, body: { code: 'OPERATOR_TOKEN_NOT_FOUND' } });
  });
});

describe('audit chain check', () => {
  it('reports an intact chain with its head, and checks an anchor', async () => {
    const { registry } = gw.gateway.dataDir;
    const newest = (await registry.queryAudit({ limit: 1 }))[0];
    const response = await api.call<{ ok: boolean; entries: number; head: { id: number; hash: string } }>('GET', '/v1/audit/verify', { token: true });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ ok: true, entries: expect.any(Number), head: { id: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(response.body.head.id).toBeGreaterThanOrEqual(newest?.id ?? 1);

    const anchor = `${response.body.head.id}:${response.body.head.hash}`;
    expect((await api.call('GET', `/v1/audit/verify?anchor=${anchor}`, { token: true })).body).toMatchObject({ ok: true });
    const wrong = `${response.body.head.id}:${'0'.repeat(64)}`;
    expect((await api.call('GET', `/v1/audit/verify?anchor=${wrong}`, { token: true })).body).toMatchObject({ ok: false, firstBrokenId: 1 });
    expect(await api.call('GET', '/v1/audit/verify?anchor=12:nothex', { token: true })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
  });
});

describe('CLI: fleetgate token … and audit verify', () => {
  let output: string[];

  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  /** Runs the commands in this process, as cli/main.ts would wire them, and returns what they printed. */
  async function fleetgate(...args: string[]): Promise<string> {
    output = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      output.push(String(chunk));
      return true;
    });
    const program = new Command('fleetgate').exitOverride();
    registerTokenCommands(program);
    // Stands in for the `audit` command of cli/operator-commands.ts: same shared options, its own action.
    const audit = withOperatorOptions(program.command('audit')).action(() => {
      throw new Error('the parent audit command ran instead of verify');
    });
    registerAuditVerifyCommand(audit);
    try {
      await program.parseAsync([...args, '--api', api.baseUrl, '--data-dir', gw.dataDirPath], { from: 'user' });
    } finally {
      vi.mocked(process.stdout.write).mockRestore();
    }
    return output.join('');
  }

  it('creates a token, printing it once with a warning, lists and revokes it', async () => {
    const text = await fleetgate('token', 'create', '--name', 'cli-bot', '--role', 'viewer');
    const token = /^ {2}(fgt_\S+)$/m.exec(text)?.[1];
    expect(token).toMatch(/^fgt_[A-Za-z0-9_-]{43}$/);
    expect(text).toContain('only time it is shown');
    expect((await api.call('GET', '/v1/audit/verify', { token })).status).toBe(200);

    const listed = JSON.parse(await fleetgate('token', 'list', '--json')) as { name: string; role: string }[];
    expect(listed).toContainEqual(expect.objectContaining({ name: 'cli-bot', role: 'viewer', revokedAt: null }));
    expect(await fleetgate('token', 'list')).toMatch(/^NAME\s+ROLE\s+CREATED\s+REVOKED$/m);

    expect(await fleetgate('token', 'revoke', 'cli-bot')).toMatch(/^Revoked token cli-bot \(role viewer\)/);
    expect((await api.call('GET', '/v1/audit/verify', { token })).status).toBe(401);
  });

  it('refuses a role that does not exist before calling the API', async () => {
    await expect(fleetgate('token', 'create', '--name', 'x', '--role', 'root')).rejects.toThrow(/Allowed choices are admin, operator, station, viewer/);
  });

  it('verifies the audit trail (readable and --json after the subcommand), then exits 1 once it is tampered with', async () => {
    const text = await fleetgate('audit', 'verify');
    expect(text).toMatch(/^Audit trail intact: \d+ entries/);
    const head = /^Head: (\d+:[0-9a-f]{64})$/m.exec(text)?.[1];
    expect(head).toBeDefined();
    expect(process.exitCode).toBeUndefined();

    const json = JSON.parse(await fleetgate('audit', 'verify', '--json', '--anchor', head ?? '')) as { ok: boolean };
    expect(json).toMatchObject({ ok: true });

    // What someone with the database file could do: drop the guard and edit history.
    const db = new Database(join(gw.dataDirPath, 'fleetgate.db'));
    try {
      db.exec('DROP TRIGGER audit_log_no_update');
      db.exec(`UPDATE audit_log SET actor = 'nobody' WHERE id = 2`);
    } finally {
      db.close();
    }
    const broken = await fleetgate('audit', 'verify');
    expect(broken).toMatch(/^AUDIT TRAIL BROKEN at entry 2: entry 2 does not match its hash/);
    expect(process.exitCode).toBe(1);
    process.exitCode = undefined;
    expect(JSON.parse(await fleetgate('audit', 'verify', '--json'))).toMatchObject({ ok: false, firstBrokenId: 2, entries: 1 });
    expect(process.exitCode).toBe(1);
  });
});
