import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaRotation } from '../../contract/index.ts';
import { launchConsoleBrowser, screenshots, signedInPage } from '../helpers/console-browser.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The console's CA page end to end (test/helpers/console-browser.ts): a viewer sees the CAs, what each still
 * vouches for, and a rotation in progress as soon as an admin prepares one.
 */
let gw: TestGateway;
let browser: Browser;
let viewer: string;

beforeAll(async () => {
  browser = await launchConsoleBrowser();
  gw = await startTestGateway();
  viewer = (await gw.api<{ token: string }>('POST', '/v1/tokens', { body: { name: 'console-cas-viewer', role: 'viewer' }, token: true })).body.token;
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
});

describe('console: certificate authorities', () => {
  it('lists the CAs with what they vouch for, and shows a rotation in progress', async () => {
    await gw.createDevice('cas-page-1');
    const { context, page, problems } = await signedInPage(browser, { apiPort: gw.apiPort, token: viewer, link: 'CAs', viewport: { width: 1300, height: 800 } });

    await expect.poll(async () => page.locator('[data-test=ca-summary]').textContent()).toBe('no rotation in progress');
    expect(await page.locator('table.list tbody tr').count()).toBe(3);
    const deviceRow = page.locator('table.list tbody tr', { hasText: 'device' });
    expect(await deviceRow.textContent()).toContain('1 certificate');
    expect(await page.locator('table.list tbody tr').first().textContent()).toContain('root');

    const prepared = (await gw.api<CaRotation>('POST', '/v1/pki/cas/rotate', { token: true, body: { role: 'device', stage: 'prepare' } })).body;
    await page.getByRole('button', { name: 'Refresh' }).click();
    await expect.poll(async () => page.locator('[data-test=ca-summary]').textContent()).toBe(`rotation in progress: device ${prepared.ca.id} next`);
    expect(await page.locator(`[data-test=ca-${prepared.ca.id}] .badge`).textContent()).toBe('next');
    await page.screenshot({ path: join(screenshots, 'console-cas.png'), fullPage: true });
    expect(problems).toEqual([]);
    await context.close();
  }, 60_000);
});
