import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The console is a browser bundle that reaches the gateway through the documented admin API only: its
 * sources import each other, Preact and htm, and of the rest of the repo only the API's contract
 * (contract/): its types, erased by esbuild, and the values of contract/constants.ts, which the bundle
 * carries (ESLint says the same per file).
 */
const src = join(import.meta.dirname, '..', '..', 'console', 'src');
const contract = join(import.meta.dirname, '..', '..', 'contract');
const contractValues = join(contract, 'constants.ts');
const allowedPackages = new Set(['preact', 'preact/hooks', 'htm/preact']);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : []));
}

describe('console sources', () => {
  it.each(sources(src).map((file) => relative(src, file)))('%s imports only console files, preact, htm and the API contract', (file) => {
    const text = readFileSync(join(src, file), 'utf8');
    // Imports and re-exports, with whether they are type-only (erased from the bundle).
    const imports = [...text.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]/gm)].map((m) => ({ typeOnly: m[1] !== undefined, specifier: m[2] ?? '' }));
    for (const { typeOnly, specifier } of imports) {
      const target = join(src, file, '..', specifier);
      if (specifier.startsWith('.') && target.startsWith(contract)) expect(typeOnly || target === contractValues, `${file}: ${specifier} (values come from contract/constants.ts only)`).toBe(true);
      else if (specifier.startsWith('.')) expect(target.startsWith(src), `${file}: ${specifier}`).toBe(true);
      else expect(allowedPackages.has(specifier), `${file}: ${specifier}`).toBe(true);
    }
  });

  it('reads the API contract: its types, and its values from the one constants module', () => {
    const api = readFileSync(join(src, 'api.ts'), 'utf8');
    expect(api).toMatch(/^export type \{[^}]*\bDeviceDetail\b[^}]*\} from '\.\.\/\.\.\/contract\/index\.ts';$/m);
    expect(api).toMatch(/^export \{[^}]*\boperatorRevocationReasons\b[^}]*\} from '\.\.\/\.\.\/contract\/constants\.ts';$/m);
  });

  it('stores no token anywhere the browser keeps (memory only)', () => {
    const all = sources(src).map((file) => readFileSync(file, 'utf8')).join('\n');
    expect(all).not.toMatch(/localStorage|sessionStorage|document\.cookie|indexedDB/);
  });
});
