import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/fleetgate-process.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';

/**
 * Every list route answers `{items, next}`: a page, and the cursor of the next one (null at the end), the
 * way `GET /v1/devices` always has. Templates and claims page by name and by claim id; the CLI (a real
 * process, over the API's HTTPS listener) follows.
 */
let gw: ApiUnderTest;

beforeAll(async () => {
  gw = await startApiUnderTest();
  for (const name of ['page-a', 'page-b', 'page-c']) expect((await gw.api('POST', '/v1/templates', { body: { name }, token: true })).status).toBe(201);
  for (let i = 0; i < 3; i += 1) await gw.issueClaim({});
});
afterAll(async () => {
  await gw?.close();
});

interface Page<T> {
  items: T[];
  next: string | null;
}

describe('list routes', () => {
  it.each(['/v1/devices', '/v1/services', '/v1/templates', '/v1/claims', '/v1/policies', '/v1/sessions', '/v1/tokens'])('%s answers {items, next}', async (path) => {
    const answer = await gw.api<Page<unknown>>('GET', path, { token: true });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(Object.keys(answer.body).sort()).toEqual(['items', 'next']);
    expect(Array.isArray(answer.body.items)).toBe(true);
  });

  it('pages templates by name and claims oldest first, with a cursor to the next page and null at the end', async () => {
    const templates: string[] = [];
    let after: string | null = '';
    while (after !== null) {
      const answer: Page<{ name: string }> = (await gw.api<Page<{ name: string }>>('GET', `/v1/templates?limit=2${after ? `&after=${after}` : ''}`, { token: true })).body;
      expect(answer.items.length).toBeLessThanOrEqual(2);
      templates.push(...answer.items.map((t) => t.name));
      after = answer.next;
    }
    expect(templates).toEqual(['default', 'page-a', 'page-b', 'page-c']);

    const all = (await gw.api<Page<{ claimId: string }>>('GET', '/v1/claims', { token: true })).body;
    expect(all).toMatchObject({ next: null });
    expect(all.items.length).toBeGreaterThanOrEqual(3);
    const first = (await gw.api<Page<{ claimId: string }>>('GET', '/v1/claims?limit=1', { token: true })).body;
    expect(first).toEqual({ items: [all.items[0]], next: all.items[0]?.claimId });
    const second = (await gw.api<Page<{ claimId: string }>>('GET', `/v1/claims?limit=1&after=${first.next}`, { token: true })).body;
    expect(second.items).toEqual([all.items[1]]);
  });

  it('refuses a bad limit or a cursor that names nothing', async () => {
    for (const path of ['/v1/templates?limit=0', '/v1/claims?limit=5000', '/v1/templates?after=no-such-template', '/v1/claims?after=claim-nope', '/v1/claims?bogus=1']) {
      expect(await gw.api('GET', path, { token: true }), path).toMatchObject({ status: 400, body: { code: 'REQUEST_INVALID' } });
    }
  });

  it('`template list` and `claim list` print the page and say how to get the next one', async () => {
    const api = ['--data-dir', gw.dataDirPath, '--api', `https://localhost:${await gw.listen()}`];
    const json = await runCli(['template', 'list', '--limit', '2', '--json', ...api]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ items: [{ name: 'default' }, { name: 'page-a' }], next: 'page-a' });
    const text = await runCli(['template', 'list', '--limit', '1', '--after', 'page-a', ...api]);
    expect(text.stdout).toMatch(/page-b/);
    expect(text.stdout).toContain('(more: fleetgate template list --after page-b)');
    const claims = await runCli(['claim', 'list', '--json', ...api]);
    expect(JSON.parse(claims.stdout)).toMatchObject({ items: expect.any(Array), next: null });
  });
});
