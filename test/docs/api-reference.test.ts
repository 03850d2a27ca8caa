import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeBuiltApi, renderApiReference } from '../../docs/api-reference.ts';

/** docs/api-reference.md is generated from the API as built; a route, role or schema change must regenerate it. */
describe('API reference', () => {
  it('is what `npm run docs:api` generates from the current API', async () => {
    const description = await describeBuiltApi();
    const committed = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'api-reference.md'), 'utf8');
    expect(committed, 'docs/api-reference.md is stale: run `npm run docs:api` and commit it').toBe(renderApiReference(description));
  });

  it('lists the roles the running code admits, found by calling each route (not copied from a table)', async () => {
    const { document, access } = await describeBuiltApi();
    const operations = Object.entries(document.paths).flatMap(([path, byMethod]) => Object.keys(byMethod).map((method) => `${method.toUpperCase()} ${path}`));
    expect(operations.length).toBeGreaterThan(30);
    expect([...access.keys()].sort()).toEqual(operations.sort());
    // Controls on both sides: a public route, an admin-only route, a route only a broker may call, and a
    // route a client certificate opens.
    expect(access.get('GET /healthz')).toEqual({ kind: 'anyone' });
    expect(access.get('POST /v1/tokens')).toEqual({ kind: 'roles', roles: ['admin'] });
    expect(access.get('POST /v1/relay/certificate-requests')).toEqual({ kind: 'roles', roles: ['broker'] });
    expect(access.get('POST /v1/enroll')).toEqual({ kind: 'certificate' });
  });
});
