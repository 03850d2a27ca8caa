import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { errorCatalogue } from '../../core/index.ts';

/** The README's error table is the operators' reference: it must list exactly the catalogue, as it is. */
describe('error catalogue and README', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
  const rows = new Map([...readme.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \| (.*) \|$/gm)].map((m) => [m[1] ?? '', { http: Number(m[2]), message: m[3]?.replace(/\\\|/g, '|') }]));

  it('documents every code with its HTTP status and message', () => {
    for (const [code, spec] of Object.entries(errorCatalogue)) {
      expect(rows.get(code), `README is missing ${code}`).toEqual({ http: spec.http, message: spec.message });
    }
  });

  it('documents no code that does not exist', () => {
    expect([...rows.keys()].filter((code) => !(code in errorCatalogue))).toEqual([]);
  });

  it('keeps every message user-safe and actionable (no stack traces, no empty text)', () => {
    for (const spec of Object.values(errorCatalogue)) {
      expect(spec.message.length).toBeGreaterThan(20);
      expect(spec.message).not.toMatch(/\bat .*\.ts:\d+/);
    }
  });
});
