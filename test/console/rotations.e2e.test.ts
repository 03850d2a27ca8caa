import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RotationCampaign } from '../../contract/index.ts';
import { launchConsoleBrowser, signedInPage } from '../helpers/console-browser.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The console's Rotations page end to end (test/helpers/console-browser.ts): an operator starts a campaign
 * from the form, sees its counts, pauses, resumes and closes it; a viewer sees the counts and no controls.
 */
let gw: TestGateway;
let browser: Browser;
/** Each page's page errors and CSP violations (test/helpers/console-browser.ts). */
const problems: string[][] = [];

async function signedIn(token: string, role: string): Promise<Page> {
  const signed = await signedInPage(browser, { apiPort: gw.apiPort, token, who: role, link: 'Rotations', viewport: { width: 1200, height: 700 } });
  problems.push(signed.problems);
  return signed.page;
}

beforeAll(async () => {
  browser = await launchConsoleBrowser();
  gw = await startTestGateway();
  for (const id of ['console-rot-1', 'console-rot-2', 'console-rot-3']) await gw.createDevice(id);
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
});

describe('console: rotation campaigns', () => {
  it('lets an operator start, pause, resume and close a campaign, with its counts', async () => {
    const page = await signedIn(gw.gateway.dataDir.adminToken, 'admin');
    await page.getByLabel('Devices').fill('ids=console-rot-1, console-rot-2 console-rot-3');
    await page.getByLabel('Per second').fill('1');
    await page.getByRole('button', { name: 'Start campaign' }).click();
    const row = page.locator('tr[data-campaign]');
    await row.waitFor();
    await expect.poll(async () => row.locator('td').nth(3).innerText()).toContain('0/3');
    const id = (await row.getAttribute('data-campaign')) as string;
    await row.getByRole('button', { name: 'Pause' }).click();
    await row.locator('.badge', { hasText: 'paused' }).waitFor();
    await row.getByRole('button', { name: 'Resume' }).click();
    await row.locator('.badge', { hasText: 'running' }).waitFor();
    await row.getByRole('button', { name: 'Close' }).click();
    await row.locator('.badge', { hasText: 'closed' }).waitFor();
    expect(await row.getByRole('button').count()).toBe(0);
    const campaign = (await gw.api<RotationCampaign>('GET', `/v1/rotations/${id}`, { token: true })).body;
    expect(campaign).toMatchObject({ state: 'closed', selector: 'ids (3)', ratePerSecond: 1, createdBy: 'operator:admin' });

    // A selector the API refuses is shown with its code.
    await page.getByLabel('Devices').fill('template=nope');
    await page.getByRole('button', { name: 'Start campaign' }).click();
    await page.getByRole('alert').filter({ hasText: 'TEMPLATE_NOT_FOUND' }).waitFor();
  });

  it('shows a viewer the counts and no controls', async () => {
    const created = await gw.api<{ token: string }>('POST', '/v1/tokens', { token: true, body: { name: 'rot-viewer', role: 'viewer' } });
    const page = await signedIn(created.body.token, 'viewer');
    await page.locator('tr[data-campaign]').first().waitFor();
    expect(await page.getByRole('button', { name: 'Start campaign' }).count()).toBe(0);
    expect(await page.locator('tr[data-campaign] button').count()).toBe(0);
  });

  it('caused no Content-Security-Policy violation or script error', () => {
    expect(problems.flat()).toEqual([]);
  });
});
