import { execFile } from 'node:child_process';
import { rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * The dependency rule (docs/architecture.md) is enforced by the compiler, not by review: each folder is a TypeScript
 * project that references only what it may import. These probes prove a forbidden import fails the build.
 */
const root = join(import.meta.dirname, '..', '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const run = promisify(execFile);

async function compileProbe(folder: string, source: string): Promise<{ ok: boolean; output: string }> {
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const probe = join(root, folder, `layering-probe-${tag}.ts`);
  const config = join(root, folder, `tsconfig.probe-${tag}.json`);
  const out = join(tmpdir(), `fleetgate-probe-${tag}`);
  const base = JSON.parse(readFileSync(join(root, folder, 'tsconfig.json'), 'utf8')) as { references?: unknown };
  writeFileSync(probe, source);
  writeFileSync(
    config,
    // Keep `composite`: it is what makes an import from outside the project's files an error (TS6307).
    // A type check only: nothing is emitted (a file outside the project would otherwise be compiled next to
    // its source), and the build info goes to the temporary folder, never into build/.
    JSON.stringify({
      extends: './tsconfig.json',
      compilerOptions: { noEmit: true, tsBuildInfoFile: join(out, 'probe.tsbuildinfo') },
      include: [],
      files: [probe],
      references: base.references ?? [],
    }),
  );
  try {
    await run(process.execPath, [tsc, '-p', config], { cwd: root });
    return { ok: true, output: '' };
  } catch (error) {
    return { ok: false, output: String((error as { stdout?: string }).stdout ?? error) };
  } finally {
    rmSync(probe, { force: true });
    rmSync(config, { force: true });
    rmSync(out, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  await run(process.execPath, [tsc, '-b', 'core', 'registry', 'cluster', 'contract'], { cwd: root }); // probes read their references' outputs
}, 120_000);

describe('layering', () => {
  it('lets broker/ import core/ (control)', async () => {
    const result = await compileProbe('broker', "import { isValidDeviceId } from '../core/index.ts';\nexport const probe = isValidDeviceId('a');\n");
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });

  it('fails the build when broker/ imports provisioning/', async () => {
    const result = await compileProbe('broker', "import { loadOrCreateAdminToken } from '../provisioning/index.ts';\nexport const probe = loadOrCreateAdminToken;\n");
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/TS6307|not listed within the file list/);
  });

  it('lets provisioning/ import the API contract (control)', async () => {
    const result = await compileProbe('provisioning', "import { fleetSchemas } from '../contract/index.ts';\nexport const probe = fleetSchemas.getDevice;\n");
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });

  it('lets broker/ import cluster/ (control)', async () => {
    const result = await compileProbe('broker', "import { withTimeout } from '../cluster/index.ts';\nexport const probe = withTimeout;\n");
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });

  it('fails the build when contract/ imports registry/ (the console bundles the contract)', async () => {
    const result = await compileProbe('contract', "import { operatorRoles } from '../registry/index.ts';\nexport const probe = operatorRoles;\n");
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/TS6307|not listed within the file list/);
  });

  it('fails the build when registry/ imports cluster/: the storage door is not the cluster\'s', async () => {
    const result = await compileProbe('registry', "import { withTimeout } from '../cluster/index.ts';\nexport const probe = withTimeout;\n");
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/TS6307|not listed within the file list/);
  });

  it('fails the build when broker/ imports the API contract', async () => {
    const result = await compileProbe('broker', "import { fleetSchemas } from '../contract/index.ts';\nexport const probe = fleetSchemas;\n");
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/TS6307|not listed within the file list/);
  });

  it('fails the build when cluster/ imports registry/', async () => {
    const result = await compileProbe('cluster', "import { isPostgresUrl } from '../registry/index.ts';\nexport const probe = isPostgresUrl;\n");
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/TS6307|not listed within the file list/);
  });

  it('fails the build when core/ imports a node: module', async () => {
    const result = await compileProbe('core', "import { readFileSync } from 'node:fs';\nexport const probe = readFileSync;\n");
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/node:fs/);
  });
});
