import { cpSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRequest } from '../../cli/api-client.ts';
import { type FleetgateProcess, runCli, startFleetgateProcess } from '../helpers/fleetgate-process.ts';
import { databaseUrlVia, testSchemas } from '../helpers/postgres.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * `fleetgate token rotate-admin` against two `fleetgate provisioning` processes sharing one PostgreSQL
 * registry and one data directory: the old bootstrap token is refused at once by both, the new one works on
 * both without a restart, and a process restarted on the new admin.token keeps refusing the old one.
 */
const schemas = testSchemas();
const databaseUrl = databaseUrlVia(5432, schemas.fresh());
const dir = makeTempDir('fleetgate-rotate-');
const dataDir = join(dir.path, 'data');
const processes: FleetgateProcess[] = [];
let ca: string;

const startApi = async () => {
  const started = await startFleetgateProcess(['provisioning', '--data-dir', dataDir, '--host', '127.0.0.1', '--hostname', 'localhost', '--api-port', '0'], {
    FLEETGATE_DATABASE_URL: databaseUrl,
  });
  processes.push(started);
  return { process: started, port: Number(/api=https:\/\/[^ ]+:(\d+)/.exec(started.readyLine)?.[1]) };
};
let first: Awaited<ReturnType<typeof startApi>>;
let second: Awaited<ReturnType<typeof startApi>>;

const whoami = (port: number, token: string) => apiRequest<{ name?: string; role?: string; code?: string }>({ baseUrl: `https://127.0.0.1:${port}`, ca, token }, 'GET', '/v1/whoami');
const tokenFile = () => readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
const rotate = (port: number) => runCli(['token', 'rotate-admin', '--data-dir', dataDir, '--api', `https://localhost:${port}`, '--json']);

beforeAll(async () => {
  first = await startApi();
  second = await startApi();
  ca = readFileSync(join(dataDir, 'pki', 'ca.crt'), 'utf8');
}, 60_000);
afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await schemas.dropAll();
  dir.remove();
});

describe('token rotate-admin', () => {
  it('refuses the old token at once on every API process and accepts the new one without a restart', async () => {
    const original = tokenFile();
    for (const api of [first, second]) expect((await whoami(api.port, original)).body).toEqual({ name: 'admin', role: 'admin' });

    // An operator's copy of the data directory, taken before the rotation.
    const stale = join(dir.path, 'stale');
    cpSync(join(dataDir, 'pki', 'ca.crt'), join(stale, 'pki', 'ca.crt'));
    cpSync(join(dataDir, 'admin.token'), join(stale, 'admin.token'));

    const rotated = await rotate(first.port);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(JSON.parse(rotated.stdout)).toMatchObject({ name: expect.stringMatching(/^admin\./), file: join(dataDir, 'admin.token') });
    expect(rotated.stdout).not.toContain(tokenFile()); // the token goes to the file only
    const next = tokenFile();
    expect(next).not.toBe(original);
    expect(statSync(join(dataDir, 'admin.token')).mode & 0o777).toBe(0o600);

    for (const api of [first, second]) {
      expect(await whoami(api.port, original)).toMatchObject({ status: 401, body: { code: 'API_UNAUTHENTICATED' } });
      expect((await whoami(api.port, next)).body).toEqual({ name: 'admin', role: 'admin' });
    }
    const refused = await runCli(['device', 'list', '--data-dir', stale, '--api', `https://localhost:${second.port}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`API_UNAUTHENTICATED`);
    expect(refused.stderr).toContain(`The token came from ${join(stale, 'admin.token')}: it was rotated since`);
    const audit = await apiRequest<{ items: { actor: string; result: string }[] }>({ baseUrl: `https://127.0.0.1:${second.port}`, ca, token: next }, 'GET', '/v1/audit?action=token.rotate-admin');
    expect(audit.body.items[0]).toMatchObject({ actor: 'operator:admin', result: 'ok' });
  });

  it('a process restarted on the new admin.token keeps refusing the old one, and a second rotation retires the first', async () => {
    const current = tokenFile();
    expect(await second.process.stop()).toBe(0);
    second = await startApi();
    expect((await whoami(second.port, current)).body).toEqual({ name: 'admin', role: 'admin' });

    const again = await rotate(second.port);
    expect(again.code, again.stderr).toBe(0);
    const newest = tokenFile();
    for (const api of [first, second]) {
      expect((await whoami(api.port, current)).status).toBe(401);
      expect((await whoami(api.port, newest)).body).toEqual({ name: 'admin', role: 'admin' });
    }
  });

  it('is admin work, and no personal token may take a name of the bootstrap generations', async () => {
    const admin = tokenFile();
    const call = (method: string, path: string, token: string, body?: unknown) => apiRequest<{ token?: string; code?: string }>({ baseUrl: `https://127.0.0.1:${first.port}`, ca, token }, method, path, body);
    const operator = await call('POST', '/v1/tokens', admin, { name: 'rotation-operator', role: 'operator' });
    expect(operator.status).toBe(201);
    expect(await call('POST', '/v1/tokens/admin/rotate', operator.body.token ?? '')).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    expect(await call('POST', '/v1/tokens', admin, { name: 'admin.sneaky', role: 'viewer' })).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    expect(tokenFile()).toBe(admin);
    expect((await whoami(first.port, admin)).status).toBe(200);
  });

  it('says so when the local data directory belongs to another deployment than --api', async () => {
    const other = join(dir.path, 'other');
    expect((await runCli(['init', '--data-dir', other, '--hostname', 'localhost'], { FLEETGATE_DATABASE_URL: '' })).code).toBe(0);
    const refused = await runCli(['device', 'list', '--data-dir', other, '--api', `https://localhost:${first.port}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`is not signed by the CA in ${join(other, 'pki', 'trust-bundle.pem')}`);
  });
});
