import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/fleetgate-process.ts';
import { databaseUrlVia, testSchemas } from '../helpers/postgres.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * `fleetgate init` is local: it makes CAs in a data directory. Pointed at a PostgreSQL registry that already
 * serves a deployment, from a directory without that deployment's CAs, it refuses before writing anything.
 */
const schemas = testSchemas();
const databaseUrl = databaseUrlVia(5432, schemas.fresh());
const dir = makeTempDir('fleetgate-init-pg-');

afterAll(async () => {
  await schemas.dropAll();
  dir.remove();
});

describe('init with a PostgreSQL registry', () => {
  it('initialises a new deployment, and refuses a second data directory on the same database', async () => {
    const owner = join(dir.path, 'owner');
    const created = await runCli(['init', '--data-dir', owner, '--database-url', databaseUrl, '--json']);
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout).created).toEqual(expect.arrayContaining([expect.stringMatching(/^PKI/)]));

    const stranger = join(dir.path, 'stranger');
    const refused = await runCli(['init', '--data-dir', stranger, '--hostname', 'localhost', '--json'], { FLEETGATE_DATABASE_URL: databaseUrl });
    expect(refused.code).toBe(2);
    expect(JSON.parse(refused.stderr)).toMatchObject({ code: 'CONFIG_INVALID', problems: [expect.stringContaining('copy the data directory')] });
    expect(existsSync(join(stranger, 'pki'))).toBe(false);
    expect(existsSync(join(stranger, 'admin.token'))).toBe(false);

    const again = await runCli(['init', '--data-dir', owner, '--database-url', databaseUrl]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already initialised/);
  });
});
