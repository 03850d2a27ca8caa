import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The console's health-check page end to end (Debian's Chromium, as in console.e2e.test.ts): a viewer sees
 * a failing check with its findings and next step, the operator fixes the fleet, and a refresh shows it clear.
 */
const root = join(import.meta.dirname, '..', '..');
const chromiumPath = '/usr/bin/chromium';
const screenshots = join(root, 'test-output', 'screenshots');
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let gw: TestGateway;
let browser: Browser;
let viewer: string;
const pageErrors: string[] = [];

const narrow = { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] }] };
const wide = { statements: [{ effect: 'allow', actions: ['subscribe', 'receive'], topics: ['#'] }] };

beforeAll(async () => {
  if (!existsSync(chromiumPath)) throw new Error(`Chromium is not installed at ${chromiumPath}: run \`apt-get install chromium\` (Debian's package; .ci/run installs it).`);
  execFileSync(process.execPath, ['--import', 'tsx', join(root, 'console', 'build.ts')], { cwd: root, stdio: 'pipe' });
  mkdirSync(screenshots, { recursive: true });
  gw = await startTestGateway();
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  const created = await gw.api<{ token: string }>('POST', '/v1/tokens', { body: { name: 'console-checks-viewer', role: 'viewer' }, token: true });
  viewer = created.body.token;
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
});

describe('console: fleet health checks', () => {
  it('shows a failing check with its findings and next step, and shows it clear after the fix', async () => {
    expect((await gw.api('PUT', '/v1/policies/default', { token: true, body: wide })).status).toBe(200);
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (/Content.Security.Policy/i.test(message.text())) pageErrors.push(message.text());
    });
    await page.goto(`https://127.0.0.1:${gw.apiPort}/console`);
    await page.getByLabel('Operator token').fill(viewer);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation').getByRole('link', { name: 'Health checks', exact: true }).click();

    const policyRow = page.locator('[data-test=check-permissive-policy]');
    await expect.poll(async () => policyRow.locator('.badge').textContent()).toBe('fail');
    expect(await policyRow.textContent()).toContain('policy default');
    expect(await policyRow.textContent()).toContain('statement 0 allows #');
    expect(await policyRow.locator('.next-step').textContent()).toContain('fleetgate policy set');
    expect(await page.locator('[data-test=checks-summary]').textContent()).toMatch(/fail\s*10 checks: 1 failed/);
    // Failed checks come first.
    expect(await page.locator('table.checks tbody tr').first().getAttribute('data-test')).toBe('check-permissive-policy');
    await page.screenshot({ path: join(screenshots, 'console-checks.png'), fullPage: true });

    expect((await gw.api('PUT', '/v1/policies/default', { token: true, body: narrow })).status).toBe(200);
    // The API answers from a run at most a few seconds old: refresh until it shows the fix.
    await expect
      .poll(
        async () => {
          await page.getByRole('button', { name: 'Refresh' }).click();
          return policyRow.locator('.badge').textContent();
        },
        { timeout: 20_000, interval: 1_000 },
      )
      .toBe('pass');
    expect(await policyRow.locator('.next-step').count()).toBe(0);
    expect(pageErrors).toEqual([]);
    await context.close();
  }, 60_000);
});
