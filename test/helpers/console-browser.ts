import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

/**
 * Debian's Chromium (never a downloaded browser) for the console's end-to-end tests, on a freshly built
 * console (console/build.ts). Each page collects page errors and Content-Security-Policy violations in
 * `problems`: a test ends by expecting none.
 */
const root = join(import.meta.dirname, '..', '..');
const chromiumPath = '/usr/bin/chromium';
export const screenshots = join(root, 'test-output', 'screenshots');
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launchConsoleBrowser(): Promise<Browser> {
  if (!existsSync(chromiumPath)) throw new Error(`Chromium is not installed at ${chromiumPath}: run \`apt-get install chromium\` (Debian's package; .ci/run installs it).`);
  execFileSync(process.execPath, ['--import', 'tsx', join(root, 'console', 'build.ts')], { cwd: root, stdio: 'pipe' });
  mkdirSync(screenshots, { recursive: true });
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
}

/**
 * A fresh profile signed in with `token` (dialogs accepted), after the console shows who signed in, on the
 * navigation link `link` when given.
 */
export async function signedInPage(
  browser: Browser,
  options: { apiPort: number; token: string; who?: string; link?: string; viewport?: { width: number; height: number } },
): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: options.viewport ?? { width: 1200, height: 800 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.setDefaultTimeout(15_000);
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('dialog', (dialog) => void dialog.accept());
  await page.goto(`https://127.0.0.1:${options.apiPort}/console`);
  await page.getByLabel('Operator token').fill(options.token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (options.who !== undefined) await page.locator('[data-test=who]', { hasText: options.who }).waitFor();
  if (options.link !== undefined) await page.getByRole('navigation').getByRole('link', { name: options.link, exact: true }).click();
  return { context, page, problems };
}
