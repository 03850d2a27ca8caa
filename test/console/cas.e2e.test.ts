import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaRotation } from '../../contract/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The console's CA page end to end (Debian's Chromium, as in console.e2e.test.ts): a viewer sees the CAs,
 * what each still vouches for, and a rotation in progress as soon as an admin prepares one.
 */
const root = join(import.meta.dirname, '..', '..');
const chromiumPath = '/usr/bin/chromium';
const screenshots = join(root, 'test-output', 'screenshots');
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let gw: TestGateway;
let browser: Browser;
let viewer: string;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(chromiumPath)) throw new Error(`Chromium is not installed at ${chromiumPath}: run \`apt-get install chromium\` (Debian's package; .ci/run installs it).`);
  execFileSync(process.execPath, ['--import', 'tsx', join(root, 'console', 'build.ts')], { cwd: root, stdio: 'pipe' });
  mkdirSync(screenshots, { recursive: true });
  gw = await startTestGateway();
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  viewer = (await gw.api<{ token: string }>('POST', '/v1/tokens', { body: { name: 'console-cas-viewer', role: 'viewer' }, token: true })).body.token;
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
});

describe('console: certificate authorities', () => {
  it('lists the CAs with what they vouch for, and shows a rotation in progress', async () => {
    await gw.createDevice('cas-page-1');
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1300, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (/Content.Security.Policy/i.test(message.text())) pageErrors.push(message.text());
    });
    await page.goto(`https://127.0.0.1:${gw.apiPort}/console`);
    await page.getByLabel('Operator token').fill(viewer);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation').getByRole('link', { name: 'CAs', exact: true }).click();

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
    expect(pageErrors).toEqual([]);
    await context.close();
  }, 60_000);
});
