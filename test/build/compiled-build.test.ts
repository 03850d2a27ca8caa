import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/fleetgate-process.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * What `npm install`, `npx fleetgate` and the Docker runtime stage run is build/ (tsc -b, see README
 * "Build and runtime"), with the production dependencies only. The test set-up compiles it first
 * (test/helpers/compiled-build.ts).
 */
const root = join(import.meta.dirname, '..', '..');
const execFileAsync = promisify(execFile);
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const runtimeProjects = ['core', 'registry', 'cluster', 'contract', 'broker', 'provisioning', 'device-sim', 'cli'];

function javascriptFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return javascriptFiles(path);
    return entry.name.endsWith('.js') ? [path] : [];
  });
}

/** The module specifiers of every static and dynamic import and re-export in a compiled file. */
function specifiers(source: string): string[] {
  return [...source.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)].map(
    (match) => (match[1] ?? match[2] ?? match[3]) as string,
  );
}

describe('the compiled build', () => {
  const files = runtimeProjects.flatMap((project) => javascriptFiles(join(root, 'build', project)));
  const temp = makeTempDir();
  afterAll(() => temp.remove());

  it('is JavaScript that imports JavaScript: every relative .ts import was rewritten', () => {
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) for (const specifier of specifiers(readFileSync(file, 'utf8'))) expect(specifier, file).not.toMatch(/\.ts$/);
  });

  it('imports only Node built-ins and production dependencies, so the pruned Docker image has all it needs', () => {
    const imported = new Set(files.flatMap((file) => specifiers(readFileSync(file, 'utf8'))).filter((specifier) => !specifier.startsWith('.')));
    expect(imported.size).toBeGreaterThan(5);
    for (const specifier of imported) {
      if (specifier.startsWith('node:') || builtinModules.includes(specifier)) continue;
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : (specifier.split('/')[0] as string);
      expect(Object.keys(packageJson.dependencies), specifier).toContain(name);
    }
  });

  it('prints the package version', async () => {
    const result = await runCli(['--version']);
    expect(result).toMatchObject({ code: 0, stdout: `${packageJson.version}\n` });
  });

  it('finds the console bundle from build/cli as from cli/', async () => {
    const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', `import { packageRoot } from ${JSON.stringify(join(root, 'build', 'cli', 'package-root.js'))}; console.log(packageRoot());`]);
    expect(stdout.trim()).toBe(root);
  });

  it('says how to build when build/ is missing', async () => {
    mkdirSync(join(temp.path, 'bin'));
    copyFileSync(join(root, 'bin', 'fleetgate.js'), join(temp.path, 'bin', 'fleetgate.js'));
    const failed = await execFileAsync(process.execPath, [join(temp.path, 'bin', 'fleetgate.js'), '--version']).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('run `npm run build`');
  });
});
