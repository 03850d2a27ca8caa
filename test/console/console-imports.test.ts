import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The console is a browser bundle that reaches the gateway through the documented admin API only: its
 * sources import each other, Preact and htm, and nothing of the server (ESLint says the same per file).
 */
const src = join(import.meta.dirname, '..', '..', 'console', 'src');
const allowedPackages = new Set(['preact', 'preact/hooks', 'htm/preact']);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : []));
}

describe('console sources', () => {
  it.each(sources(src).map((file) => relative(src, file)))('%s imports only console files, preact and htm', (file) => {
    const text = readFileSync(join(src, file), 'utf8');
    const specifiers = [...text.matchAll(/^\s*import\s[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1] ?? '');
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) expect(join(src, file, '..', specifier).startsWith(src), `${file}: ${specifier}`).toBe(true);
      else expect(allowedPackages.has(specifier), `${file}: ${specifier}`).toBe(true);
    }
  });

  it('stores no token anywhere the browser keeps (memory only)', () => {
    const all = sources(src).map((file) => readFileSync(file, 'utf8')).join('\n');
    expect(all).not.toMatch(/localStorage|sessionStorage|document\.cookie|indexedDB/);
  });
});
