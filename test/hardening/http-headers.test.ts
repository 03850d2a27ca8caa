import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';

/**
 * Response headers of the HTTPS API: HSTS on every answer (errors and 404s included), and on the API
 * reference (/docs and its assets) a Content-Security-Policy that forbids framing and foreign origins, with
 * X-Frame-Options and nosniff for older browsers (the headers through `inject()`: build-api.ts sets them,
 * nothing on the way to the socket adds or drops one). The page must still render in a real browser under
 * it, over the API's HTTPS listener.
 */
const chromiumPath = '/usr/bin/chromium';
let gw: ApiUnderTest;

beforeAll(async () => {
  gw = await startApiUnderTest();
});
afterAll(async () => {
  await gw?.close();
});

const hsts = /^max-age=(\d+)$/;

describe('API security headers', () => {
  it('sends Strict-Transport-Security and nosniff on every answer, refusals and unknown routes included', async () => {
    const answers = [
      await gw.api('GET', '/healthz'),
      await gw.api('GET', '/v1/devices'), // 401
      await gw.api('GET', '/v1/devices', { token: true }),
      await gw.api('GET', '/no/such/route'), // 404
      await gw.api('POST', '/v1/pki/ocsp', { body: 'x', contentType: 'application/ocsp-request' }),
    ];
    for (const answer of answers) {
      const header = String(answer.headers['strict-transport-security']);
      expect(header, JSON.stringify(answer.body)).toMatch(hsts);
      expect(Number(hsts.exec(header)?.[1])).toBeGreaterThanOrEqual(180 * 24 * 3600);
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('serves /docs and its assets with a CSP that forbids framing, X-Frame-Options DENY and nosniff', async () => {
    const page = await gw.api<string>('GET', '/docs');
    expect(page.status).toBe(200);
    expect(String(page.headers['content-type'])).toMatch(/^text\/html/);
    expect(String(page.body)).toContain('swagger-ui-bundle.js');
    for (const path of ['/docs', '/docs/', '/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-initializer.js', '/docs/json']) {
      const answer = await gw.api('GET', path);
      expect(answer.status, path).toBe(200);
      const csp = String(answer.headers['content-security-policy']);
      expect(csp, path).toContain("frame-ancestors 'none'");
      expect(csp, path).toContain("default-src 'none'");
      expect(csp, path).not.toMatch(/unsafe-eval|\*|https:/);
      expect(answer.headers['x-frame-options'], path).toBe('DENY');
      expect(answer.headers['x-content-type-options'], path).toBe('nosniff');
      expect(String(answer.headers['strict-transport-security']), path).toMatch(hsts);
    }
  });

  it('still renders the API reference in Chromium with no CSP violation', async () => {
    if (!existsSync(chromiumPath)) throw new Error(`Chromium is not installed at ${chromiumPath}: apt-get install chromium`);
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      const violations: string[] = [];
      page.on('console', (message) => {
        if (/Content.Security.Policy|Refused to/i.test(message.text())) violations.push(message.text());
      });
      page.on('pageerror', (error) => violations.push(`page error: ${error.message}`));
      await page.goto(`https://127.0.0.1:${await gw.listen()}/docs`);
      await page.locator('.info .title', { hasText: 'fleetgate API' }).waitFor({ timeout: 15_000 });
      await page.locator('.opblock-summary-path', { hasText: '/v1/devices' }).first().waitFor({ timeout: 15_000 });
      // Opening an operation renders its schema and the "Try it out" controls (more of Swagger UI's code paths).
      await page.locator('.opblock-summary', { hasText: '/healthz' }).first().click();
      await page.getByRole('button', { name: 'Try it out' }).first().waitFor({ timeout: 15_000 });
      expect(violations).toEqual([]);
    } finally {
      await browser?.close();
    }
  });
});
