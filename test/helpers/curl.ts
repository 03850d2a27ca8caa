import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * curl as a device's shell script would call the API (firmware-samples/shell/), with PEM files written
 * 0600 into a test's temporary folder. `ca` is read at each call (the gateway starts after this is made).
 */
export function curlClient(folder: string, ca: () => string) {
  function files(name: string, contents: Record<string, string>): Record<string, string> {
    const paths: Record<string, string> = {};
    for (const [key, value] of Object.entries(contents)) {
      paths[key] = join(folder, `${name}.${key}`);
      writeFileSync(paths[key], value, { mode: 0o600 });
    }
    return paths;
  }

  async function curl(args: string[]): Promise<{ status: number; body: string }> {
    const { stdout } = await run('curl', ['-sS', '--cacert', files('ca', { pem: ca() }).pem ?? '', '-w', '\n%{http_code}', ...args], { timeout: 20_000 });
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
  }

  return { files, curl };
}
