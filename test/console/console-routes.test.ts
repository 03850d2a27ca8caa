import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiApp } from '../../provisioning/index.ts';
import { consoleContentSecurityPolicy } from '../../provisioning/api/console-routes.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/** /console of the real API (`inject()`): the headers on every answer, and the answer when nothing is built. */

const dir = makeTempDir('fleetgate-console-');
const servers = new Map<string, Promise<ApiUnderTest>>();

/** The API as `fleetgate serve` builds it, serving the console from `distDir`; one per directory. */
async function appServing(distDir: string): Promise<ApiApp> {
  let server = servers.get(distDir);
  if (server === undefined) {
    server = startApiUnderTest({ consoleDir: distDir });
    servers.set(distDir, server);
  }
  return (await server).app;
}

beforeAll(() => {
  mkdirSync(join(dir.path, 'dist'));
  writeFileSync(join(dir.path, 'dist', 'index.html'), '<!doctype html><title>t</title><script type="module" src="/console/app.js"></script>');
  writeFileSync(join(dir.path, 'dist', 'app.js'), 'export {};\n');
  writeFileSync(join(dir.path, 'dist', '.secret'), 'top-secret-content');
});

afterAll(async () => {
  await Promise.all([...servers.values()].map(async (server) => (await server).close()));
  dir.remove();
});

describe('console routes', () => {
  it('serves the page and its assets with a strict CSP, nosniff and no referrer', async () => {
    const app = await appServing(join(dir.path, 'dist'));
    for (const url of ['/console', '/console/', '/console/app.js']) {
      const response = await app.inject({ method: 'GET', url });
      expect(response.statusCode, url).toBe(200);
      expect(response.headers['content-security-policy'], url).toBe(consoleContentSecurityPolicy);
      expect(response.headers['x-content-type-options'], url).toBe('nosniff');
      expect(response.headers['referrer-policy'], url).toBe('no-referrer');
      expect(response.headers['x-frame-options'], url).toBe('DENY');
    }
    expect((await app.inject({ method: 'GET', url: '/console' })).headers['content-type']).toMatch(/^text\/html/);
    expect((await app.inject({ method: 'GET', url: '/console/app.js' })).headers['content-type']).toMatch(/javascript/);
    expect(consoleContentSecurityPolicy).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
  });

  it('serves no dotfiles and nothing outside the bundle', async () => {
    const app = await appServing(join(dir.path, 'dist'));
    for (const url of ['/console/.secret', '/console/../dist/index.html', '/console/%2e%2e/%2e%2e/etc/passwd', '/console/missing.js']) {
      const response = await app.inject({ method: 'GET', url });
      expect([403, 404], url).toContain(response.statusCode);
      expect(response.body, url).not.toMatch(/top-secret-content|root:/);
    }
  });

  it('answers CONSOLE_NOT_BUILT, saying how to build it, when there is no bundle', async () => {
    const app = await appServing(join(dir.path, 'nothing-here'));
    for (const url of ['/console', '/console/app.js']) {
      const response = await app.inject({ method: 'GET', url });
      expect([response.statusCode, response.json()], url).toEqual([503, { code: 'CONSOLE_NOT_BUILT', message: expect.stringContaining('npm run build:console') }]);
      expect(response.headers['content-security-policy']).toBe(consoleContentSecurityPolicy);
    }
  });
});
