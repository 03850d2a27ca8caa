import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr, generateKeyPair } from '../../core/index.ts';
import { closed, foreignDeviceCredential, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * The web console end to end: Debian's Chromium (never a downloaded browser) against a gateway started
 * here, with a real device connected over MQTT/TLS. An operator signs in, finds the device, revokes it and
 * sees its session cut; a viewer gets no revoke button and the API refuses it anyway. Each page is
 * screenshotted into test-output/screenshots/ (git-ignored); the overview also goes to docs/ for the README.
 */

const root = join(import.meta.dirname, '..', '..');
const chromiumPath = '/usr/bin/chromium';
const screenshots = join(root, 'test-output', 'screenshots');
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let gw: TestGateway;
let browser: Browser;
let device: MqttClient;
const consoleUrl = () => `https://127.0.0.1:${gw.apiPort}/console`;

/** Content-Security-Policy violations Chromium reports: the console must cause none. */
const cspViolations: string[] = [];

async function openConsole(): Promise<{ context: BrowserContext; page: Page }> {
  // A context per operator is a fresh profile: no cookies, no storage, nothing shared with the other.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 700 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on('pageerror', (error) => cspViolations.push(`page error: ${error.message}`));
  return { context, page };
}

async function signIn(page: Page, token: string, role: string, options: { navigate?: boolean } = {}): Promise<void> {
  if (options.navigate !== false) await page.goto(consoleUrl());
  await page.getByLabel('Operator token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('[data-test=who]', { hasText: role }).waitFor();
}

const nav = (page: Page, name: string) => page.getByRole('navigation').getByRole('link', { name, exact: true });

async function screenshot(page: Page, name: string): Promise<string> {
  const path = join(screenshots, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

beforeAll(async () => {
  if (!existsSync(chromiumPath)) {
    throw new Error(`Chromium is not installed at ${chromiumPath}: run \`apt-get install chromium\` (Debian's package; .ci/run installs it).`);
  }
  // The bundle the gateway serves; `npm test` builds it first too, this keeps the file runnable alone.
  execFileSync(process.execPath, ['--import', 'tsx', join(root, 'console', 'build.ts')], { cwd: root, stdio: 'pipe' });
  mkdirSync(screenshots, { recursive: true });
  gw = await startTestGateway();
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });

  // A small fleet: one device connected, one registered and idle, one suspended, one refused connection.
  device = await gw.connect('console-dev-1', await gw.createDevice('console-dev-1'));
  await gw.createDevice('console-dev-2');
  await gw.createDevice('console-dev-3');
  expect((await gw.api('POST', '/v1/devices/console-dev-3/suspend', { token: true, body: { reason: 'in repair' } })).status).toBe(200);
  await expect(gw.connect('console-intruder', await foreignDeviceCredential('console-intruder'))).rejects.toThrow();
  // Three devices enrolled with a factory claim over HTTPS, so the overview has enrollments to chart.
  const claim = await gw.issueClaim({ maxUses: 10 });
  for (const serial of ['sensor-0001', 'sensor-0002', 'sensor-0003']) {
    const csr = await createCsr(await generateKeyPair(), serial);
    expect((await gw.api('POST', '/v1/enroll', { body: { csr, serial }, credential: claim })).status).toBe(201);
  }
}, 90_000);

afterAll(async () => {
  await browser?.close();
  device?.end(true);
  await gw?.close();
});

describe('web console', () => {
  it('is served at /console with a strict CSP and no inline script or style', async () => {
    const response = await gw.api<string>('GET', '/console');
    expect(response.status).toBe(200);
    expect(response.headers['content-security-policy']).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['referrer-policy']).toBe('no-referrer');
    const page = String(response.body);
    expect(page).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/); // every script is a file
    expect(page).not.toMatch(/<style|\sstyle=/);
    // The console's routes stay out of the API reference; the route it relies on is in it.
    const openapi = await gw.api<{ paths: Record<string, unknown> }>('GET', '/openapi.json');
    expect(Object.keys(openapi.body.paths)).toContain('/v1/whoami');
    expect(Object.keys(openapi.body.paths).filter((path) => path.startsWith('/console'))).toEqual([]);
    const script = await gw.api<string>('GET', '/console/app.js');
    expect([script.status, script.headers['content-type']]).toEqual([200, expect.stringMatching(/javascript/)]);
  });

  it('lets an admin find the connected device, revoke it and see its session cut', async () => {
    const { context, page } = await openConsole();
    await page.goto(consoleUrl());
    await page.getByLabel('Operator token').waitFor();
    await screenshot(page, 'sign-in');
    await signIn(page, gw.gateway.dataDir.adminToken, 'admin', { navigate: false });

    // Overview: one device connected, the refused intruder counted.
    await page.locator('[data-test=connected-now]', { hasText: /^1$/ }).waitFor();
    await page.getByRole('img', { name: 'Devices by status' }).waitFor();
    const overview = await screenshot(page, 'overview');
    expect(statSync(overview).size).toBeLessThan(150 * 1024);
    // The README's picture is committed; refresh it on request only, so a test run leaves the tree clean.
    const readmePicture = join(root, 'docs', 'console-overview.png');
    if (process.env.UPDATE_SCREENSHOTS === '1' || !existsSync(readmePicture)) {
      mkdirSync(join(root, 'docs'), { recursive: true });
      copyFileSync(overview, readmePicture);
    }

    // Device list: search by prefix, connected only.
    await nav(page, 'Devices').click();
    await page.getByLabel('Id starts with').fill('console-dev');
    await page.locator('tr[data-device=console-dev-3]').waitFor();
    await page.getByLabel('connected only').check();
    await page.locator('tr[data-device=console-dev-3]').waitFor({ state: 'detached' });
    const row = page.locator('tr[data-device=console-dev-1]');
    await row.getByText('connected', { exact: true }).waitFor();
    await screenshot(page, 'devices');

    // Device detail: live session, policy explained.
    await row.getByRole('link', { name: 'console-dev-1' }).click();
    await page.locator('[data-test=session]').waitFor();
    await page.getByRole('button', { name: 'Explain' }).click();
    await page.locator('[data-test=verdict]', { hasText: 'Allowed' }).waitFor();
    await page.getByLabel('topic').fill('devices/someone-else/telemetry');
    await page.getByRole('button', { name: 'Explain' }).click();
    await page.locator('[data-test=verdict]', { hasText: 'Denied' }).waitFor();
    await screenshot(page, 'device-detail');

    // Revoke: confirmation with a reason, then the session visibly cut.
    await page.getByRole('button', { name: 'Revoke' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    expect(await dialog.getByRole('button', { name: 'Confirm revoke' }).isDisabled()).toBe(true); // no reason yet
    await dialog.getByLabel('Reason (RFC 5280)').selectOption('keyCompromise');
    await screenshot(page, 'revoke-dialog');
    const deviceClosed = closed(device, 10_000);
    await dialog.getByRole('button', { name: 'Confirm revoke' }).click();
    await page.getByRole('status').filter({ hasText: 'Live session closed' }).waitFor();
    await page.locator('h1 .badge-revoked').waitFor();
    await page.locator('h1', { hasText: 'not connected' }).waitFor();
    await page.locator('[data-test=no-session]').waitFor();
    expect(await page.getByRole('button', { name: 'Revoke' }).count()).toBe(0); // final: nothing left to do
    await screenshot(page, 'device-revoked');

    // The MQTT client really lost its connection, and the registry agrees.
    expect(await deviceClosed).toBe(true);
    expect(device.connected).toBe(false);
    expect((await gw.gateway.dataDir.registry.getDevice('console-dev-1'))?.status).toBe('revoked');
    await gw.waitForAudit({ deviceId: 'console-dev-1', action: 'device.revoke' }, (e) => e.actor === 'operator:admin');

    // The list shows it revoked and disconnected too.
    await nav(page, 'Devices').click();
    const revokedRow = page.locator('tr[data-device=console-dev-1]');
    await revokedRow.locator('.badge-revoked').waitFor();
    await revokedRow.getByText('not connected').waitFor();

    // The token was never written anywhere the browser keeps.
    expect(await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie])).toEqual([0, 0, '']);
    expect(await context.cookies()).toEqual([]);
    await context.close();
  });

  it('suspends and resumes a device with a note, behind a confirmation that can be cancelled', async () => {
    const { context, page } = await openConsole();
    await signIn(page, gw.gateway.dataDir.adminToken, 'admin');
    await page.evaluate(() => (location.hash = '#/devices/console-dev-2'));
    await page.locator('h1 .badge-active').waitFor();

    await page.getByRole('button', { name: 'Suspend' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    expect((await gw.gateway.dataDir.registry.getDevice('console-dev-2'))?.status).toBe('active');

    await page.getByRole('button', { name: 'Suspend' }).click();
    await page.getByRole('dialog').getByLabel('Note for the audit trail').fill('battery swap');
    await page.getByRole('dialog').getByRole('button', { name: 'Confirm suspend' }).click();
    await page.locator('h1 .badge-suspended').waitFor();
    expect(await gw.gateway.dataDir.registry.getDevice('console-dev-2')).toMatchObject({ status: 'suspended', statusReason: 'battery swap' });

    await page.getByRole('button', { name: 'Resume' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Confirm resume' }).click();
    await page.locator('h1 .badge-active').waitFor();
    await page.getByRole('status').filter({ hasText: 'Resumed' }).waitFor();
    expect((await gw.gateway.dataDir.registry.getDevice('console-dev-2'))?.status).toBe('active');
    await context.close();
  });

  it('creates a claim, downloads its files and imports an allow-list from a CSV file', async () => {
    const { context, page } = await openConsole();
    await signIn(page, gw.gateway.dataDir.adminToken, 'admin');
    await nav(page, 'Claims & templates').click();

    const form = page.getByRole('form', { name: 'Create a claim' });
    await form.getByLabel('Max uses').fill('5');
    await form.getByRole('button', { name: 'Create claim' }).click();
    await form.getByRole('status').waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), form.getByRole('button', { name: 'Download claim.key' }).click()]);
    expect(download.suggestedFilename()).toBe('claim.key');
    expect(readFileSync(await download.path(), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const [certificate] = await Promise.all([page.waitForEvent('download'), form.getByRole('button', { name: 'Download claim.crt' }).click()]);
    expect(readFileSync(await certificate.path(), 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/);
    // The new claim is listed with its usage against max-uses.
    await page.locator('td.num', { hasText: '0 / 5' }).waitFor();

    const importer = page.getByRole('form', { name: 'Import an allow-list' });
    await importer.getByLabel('File').setInputFiles({ name: 'serials.csv', mimeType: 'text/csv', buffer: Buffer.from('serial,batch\n# line 1\ncsv-0001,7\ncsv-0002,7\n\ncsv-0003,8\n') });
    await importer.getByRole('button', { name: 'Import' }).click();
    await importer.getByRole('status').filter({ hasText: '3 serials read, 3 new' }).waitFor();
    expect(await gw.gateway.dataDir.registry.isSerialAllowed('default', 'csv-0002')).toBe(true);
    await screenshot(page, 'claims');

    // The live audit feed shows what just happened, newest first.
    await nav(page, 'Audit feed').click();
    await page.locator('td', { hasText: 'allowlist.import' }).first().waitFor();
    await page.locator('td', { hasText: 'claim.create' }).first().waitFor();
    // …and follows: an entry written now appears without reloading.
    await gw.api('POST', '/v1/devices/console-dev-2/suspend', { token: true, body: { reason: 'feed check' } });
    await page.locator('tr', { hasText: 'device.suspend' }).filter({ hasText: 'feed check' }).waitFor();
    await screenshot(page, 'audit-feed');
    await gw.api('POST', '/v1/devices/console-dev-2/resume', { token: true, body: {} });
    await context.close();
  });

  it('gives a viewer no revoke, suspend or claim controls, and the API refuses its direct calls', async () => {
    const created = await gw.api<{ token: string }>('POST', '/v1/tokens', { token: true, body: { name: 'console-viewer', role: 'viewer' } });
    expect(created.status).toBe(201);
    const viewerToken = created.body.token;

    const { context, page } = await openConsole();
    await signIn(page, viewerToken, 'viewer');
    await page.evaluate(() => (location.hash = '#/devices/console-dev-2'));
    await page.reload(); // the token lived in the page's memory only: signed out
    await page.getByLabel('Operator token').waitFor();
    await signIn(page, viewerToken, 'viewer', { navigate: false });
    await page.locator('h1', { hasText: 'console-dev-2' }).waitFor();
    await page.locator('h1 .badge-active').waitFor();
    await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
    expect(await page.getByRole('button', { name: 'Revoke' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Suspend' }).count()).toBe(0);
    await screenshot(page, 'device-detail-viewer');

    // Straight to the API from the page, with the viewer's token: refused, and nothing changes.
    const answer = await page.evaluate(async (token) => {
      const response = await fetch('/v1/devices/console-dev-2/revoke', {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'keyCompromise' }),
      });
      return { status: response.status, body: (await response.json()) as { code: string } };
    }, viewerToken);
    expect(answer).toEqual({ status: 403, body: expect.objectContaining({ code: 'API_FORBIDDEN' }) });
    expect(await gw.api('POST', '/v1/devices/console-dev-2/suspend', { token: viewerToken, body: {} })).toMatchObject({ status: 403, body: { code: 'API_FORBIDDEN' } });
    expect((await gw.gateway.dataDir.registry.getDevice('console-dev-2'))?.status).toBe('active');

    await nav(page, 'Claims & templates').click();
    await page.getByRole('heading', { name: 'Claims', exact: true }).waitFor();
    expect(await page.getByRole('button', { name: 'Create claim' }).count()).toBe(0);
    await context.close();
  });

  it('caused no Content-Security-Policy violation or script error on any page', () => {
    expect(cspViolations).toEqual([]);
  });
});
