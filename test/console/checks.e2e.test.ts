import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchConsoleBrowser, screenshots, signedInPage } from '../helpers/console-browser.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The console's health-check page end to end (test/helpers/console-browser.ts): a viewer sees a failing check
 * with its findings and next step, the operator fixes the fleet, and a refresh shows it clear.
 */
let gw: TestGateway;
let browser: Browser;
let viewer: string;

const narrow = { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] }] };
const wide = { statements: [{ effect: 'allow', actions: ['subscribe', 'receive'], topics: ['#'] }] };

beforeAll(async () => {
  browser = await launchConsoleBrowser();
  gw = await startTestGateway();
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
    const { context, page, problems } = await signedInPage(browser, { apiPort: gw.apiPort, token: viewer, link: 'Health checks', viewport: { width: 1100, height: 900 } });

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
    expect(problems).toEqual([]);
    await context.close();
  }, 60_000);
});
