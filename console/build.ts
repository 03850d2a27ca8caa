import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Bundles the console into console/dist (git-ignored): one ES module, one stylesheet and index.html,
 * all served from the gateway itself, so the console works offline and the CSP can say 'self' only.
 * `npm run build:console`; `npm start` and `npm test` run it first.
 */
export async function buildConsole(options: { minify?: boolean } = {}): Promise<string> {
  const here = dirname(fileURLToPath(import.meta.url));
  const out = join(here, 'dist');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: { app: join(here, 'src', 'main.ts'), 'app-style': join(here, 'src', 'app.css') },
    outdir: out,
    entryNames: '[name]',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    minify: options.minify ?? true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
  });
  // esbuild names a CSS entry after its key; keep the URL the page asks for simple.
  copyFileSync(join(out, 'app-style.css'), join(out, 'app.css'));
  rmSync(join(out, 'app-style.css'));
  rmSync(join(out, 'app-style.css.map'), { force: true });
  copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const started = performance.now();
  const out = await buildConsole();
  console.log(`console built in ${Math.round(performance.now() - started)} ms: ${out}`);
}
