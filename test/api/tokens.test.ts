import Database from 'better-sqlite3';
import { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { operatorTokenHash } from '../../provisioning/api/operator-auth.ts';
import type { OperatorRole } from '../../registry/index.ts';
import { withOperatorOptions } from '../../cli/operator-context.ts';
import { registerAuditVerifyCommand, registerTokenCommands } from '../../cli/token-commands.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import { rolesOf } from '../security/attack-table.ts';

/**
 * Personal operator tokens and the audit chain check, through the real API (provisioning/api/build-api.ts)
 * on its real registry, called with `inject()`; the CLI commands run over its HTTPS listener.
 */
let server: ApiUnderTest;
let baseUrl: string;

beforeAll(async () => {
  server = await startApiUnderTest();
  baseUrl = `https://127.0.0.1:${await server.listen()}`;
});

afterAll(async () => {
  await server?.close();
});

let names = 0;
/** A fresh personal token with `role`, created by the bootstrap admin. */
async function createToken(role: OperatorRole, prefix: string = role): Promise<{ name: string; token: string }> {
  const name = `${prefix}-${(names += 1)}`;
  const response = await server.api<{ name: string; token: string }>('POST', '/v1/tokens', { token: true, body: { name, role } });
  expect(response.status).toBe(201);
  return { name, token: response.body.token };
}

describe('operator tokens', () => {
  it('shows a new token once, prefixed fgt_ with 256 random bits, not to be cached', async () => {
    const response = await server.api<{ name: string; role: string; token: string; createdAt: string }>('POST', '/v1/tokens', { token: true, body: { name: 'alice', role: 'operator' } });
    expect(response.status).toBe(201);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.body).toEqual({ name: 'alice', role: 'operator', token: expect.stringMatching(/^fgt_[A-Za-z0-9_-]{43}$/), createdAt: expect.any(String) });

    // It works at once, with its role: operators may check the audit trail but not manage tokens.
    expect((await server.api('GET', '/v1/audit/verify', { token: response.body.token })).status).toBe(200);
    expect((await server.api('GET', '/v1/tokens', { token: response.body.token })).body).toMatchObject({ code: 'API_FORBIDDEN' });

    const listed = await server.api<{ items: Record<string, unknown>[] }>('GET', '/v1/tokens', { token: true });
    expect(listed.status).toBe(200);
    expect(listed.body.items).toContainEqual({ name: 'alice', role: 'operator', createdAt: response.body.createdAt, revokedAt: null });
    // Neither the token nor its hash is ever listed.
    expect(JSON.stringify(listed.body)).not.toContain(response.body.token.slice(4));
    expect(JSON.stringify(listed.body)).not.toContain(operatorTokenHash(response.body.token));
  });

  it('never stores a token in clear: the database holds its SHA-256 only', async () => {
    const { token } = await createToken('viewer');
    const dbPath = join(server.dataDirPath, 'fleetgate.db');
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
      const response = await server.api<{ code?: string }>(route.method, route.path, { token, body });
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
          authorization === undefined ? await server.api<{ code: string }>(route.method, route.path, { body: route.body }) : await server.api<{ code: string }>(route.method, route.path, { authorization });
        expect(response.status, String(authorization)).toBe(401);
        expect(response.body.code).toBe('API_UNAUTHENTICATED');
      }
    });
  });

  it('tells each caller its own name and role (GET /v1/whoami)', async () => {
    expect(await server.api('GET', '/v1/whoami', { token: true })).toMatchObject({ status: 200, body: { name: 'admin', role: 'admin' } });
    const { name, token } = await createToken('viewer', 'who');
    expect(await server.api('GET', '/v1/whoami', { token })).toMatchObject({ status: 200, body: { name, role: 'viewer' } });
  });

  it('gives a viewer 403 on a mutating route and changes nothing, even with a body that would not validate', async () => {
    const { token } = await createToken('viewer');
    const before = await server.dataDir.registry.listOperatorTokens();
    const create = await server.api<{ code: string }>('POST', '/v1/tokens', { token, body: { name: 'sneaky', role: 'admin' } });
    expect(create).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    // Authorisation runs before validation: the caller learns nothing about the route's body.
    const invalid = await server.api<{ code: string }>('POST', '/v1/tokens', { token, body: { surprise: true } });
    expect(invalid).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    const revoke = await server.api<{ code: string }>('POST', '/v1/tokens/alice/revoke', { token });
    expect(revoke).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    expect(await server.dataDir.registry.listOperatorTokens()).toEqual(before);
  });

  it('refuses a revoked token with 401 from the moment it is revoked, and audits creation and revocation', async () => {
    const admin = await createToken('admin', 'second-admin');
    const { name, token } = await createToken('operator', 'leaked');
    expect((await server.api('GET', '/v1/audit/verify', { token })).status).toBe(200);

    const revoked = await server.api<{ name: string; role: string; revokedAt: string | null }>('POST', `/v1/tokens/${name}/revoke`, { token: admin.token });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ name, role: 'operator', revokedAt: expect.any(String) });

    const refused = await server.api<{ code: string }>('GET', '/v1/audit/verify', { token });
    expect(refused).toMatchObject({ status: 401, body: { code: 'API_UNAUTHENTICATED' } });
    // Revoking again is harmless and keeps the first date.
    const again = await server.api<{ revokedAt: string }>('POST', `/v1/tokens/${name}/revoke`, { token: true });
    expect(again.body.revokedAt).toBe(revoked.body.revokedAt);

    const { registry } = server.dataDir;
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
    const duplicate = await server.api<{ code: string; message: string }>('POST', '/v1/tokens', { token: true, body: { name, role: 'viewer' } });
    expect(duplicate).toMatchObject({ status: 409, body: { code: 'OPERATOR_TOKEN_EXISTS', message: expect.stringContaining('exists') } });
    expect(await server.dataDir.registry.queryAudit({ action: 'token.create', result: 'refused' })).toContainEqual(
      expect.objectContaining({ actor: 'operator:admin', code: 'OPERATOR_TOKEN_EXISTS', detail: expect.objectContaining({ name, role: 'viewer' }) }),
    );

    for (const body of [{ name: 'admin', role: 'viewer' }, { name: 'x', role: 'root' }, { name: 'a/b', role: 'viewer' }, { name: 'x', role: 'viewer', token: 'mine' }, { name: 'x' }]) {
      const response = await server.api<{ code: string }>('POST', '/v1/tokens', { token: true, body });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.code).toBe('REQUEST_INVALID');
    }
    expect(await server.api('POST', '/v1/tokens/ghost/revoke', { token: true })).toMatchObject({ status: 404, body: { code: 'OPERATOR_TOKEN_NOT_FOUND' } });
  });
});

describe('audit chain check', () => {
  it('reports an intact chain with its head, and checks an anchor', async () => {
    const { registry } = server.dataDir;
    const newest = (await registry.queryAudit({ limit: 1 }))[0];
    const response = await server.api<{ ok: boolean; entries: number; head: { id: number; hash: string } }>('GET', '/v1/audit/verify', { token: true });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ ok: true, entries: expect.any(Number), head: { id: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(response.body.head.id).toBeGreaterThanOrEqual(newest?.id ?? 1);

    const anchor = `${response.body.head.id}:${response.body.head.hash}`;
    expect((await server.api('GET', `/v1/audit/verify?anchor=${anchor}`, { token: true })).body).toMatchObject({ ok: true });
    const wrong = `${response.body.head.id}:${'0'.repeat(64)}`;
    expect((await server.api('GET', `/v1/audit/verify?anchor=${wrong}`, { token: true })).body).toMatchObject({ ok: false, firstBrokenId: 1 });
    expect(await server.api('GET', '/v1/audit/verify?anchor=12:nothex', { token: true })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
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
      await program.parseAsync([...args, '--api', baseUrl, '--data-dir', server.dataDirPath], { from: 'user' });
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
    expect((await server.api('GET', '/v1/audit/verify', { token })).status).toBe(200);

    const listed = JSON.parse(await fleetgate('token', 'list', '--json')) as { name: string; role: string }[];
    expect(listed).toContainEqual(expect.objectContaining({ name: 'cli-bot', role: 'viewer', revokedAt: null }));
    expect(await fleetgate('token', 'list')).toMatch(/^NAME\s+ROLE\s+CREATED\s+REVOKED$/m);

    expect(await fleetgate('token', 'revoke', 'cli-bot')).toMatch(/^Revoked token cli-bot \(role viewer\)/);
    expect((await server.api('GET', '/v1/audit/verify', { token })).status).toBe(401);
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
    const db = new Database(join(server.dataDirPath, 'fleetgate.db'));
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
