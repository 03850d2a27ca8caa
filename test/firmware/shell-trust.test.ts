import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { activateNewRootAndIssuingCas, retireOldCas, rotateCa } from './root-rotation.ts';
import { normalize, trustCases } from './trust-bundle-cases.ts';

/**
 * firmware-samples/shell/trust-update.sh follows the trust bundle (README "The trust bundle"): on crafted
 * bundles (the attacker's included), then through a whole root rotation against a live gateway, after which
 * connect.sh and renew-https.sh still verify the gateway with the DIR/ca.crt it wrote.
 */
const samples = resolve(import.meta.dirname, '../../firmware-samples/shell');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function script(name: string, args: string[]): Promise<Result> {
  return new Promise((done) => {
    execFile('bash', [join(samples, name), ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

describe('trust-update.sh on crafted bundles', () => {
  const dir = makeTempDir('fleetgate-sh-trust-');
  afterAll(() => dir.remove());

  it('keeps what core rootsToTrust keeps (a signer must be a root), and nothing an attacker offers', async () => {
    const cases = await trustCases();
    for (const [index, c] of cases.entries()) {
      const device = join(dir.path, `device-${index}`);
      mkdirSync(device);
      writeFileSync(join(device, 'ca.crt'), c.trusted);
      writeFileSync(join(dir.path, `${index}-bundle.pem`), c.bundle);
      const result = await script('trust-update.sh', ['--bundle', join(dir.path, `${index}-bundle.pem`), '--dir', device]);
      expect(result.code, `${c.name}: ${result.stderr}`).toBe(0);
      expect(normalize(readFileSync(join(device, 'ca.crt'), 'utf8')), c.name).toEqual(normalize(c.expected.join('')));
    }
  }, 120_000);
});

describe('the shell sample through a root rotation', () => {
  const dir = makeTempDir('fleetgate-sh-rotation-');
  const serial = 'sh-trust-1';
  const device = join(dir.path, serial);
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway();
    const claim = await gw.issueClaim({ maxUses: 1 });
    writeFileSync(join(dir.path, 'claim.crt'), claim.cert);
    writeFileSync(join(dir.path, 'claim.key'), claim.key, { mode: 0o600 });
    writeFileSync(join(dir.path, 'ca.crt'), gw.ca);
  });
  afterAll(async () => {
    await gw?.close();
    dir.remove();
  });

  const api = () => `https://localhost:${gw.apiPort}`;
  const ok = async (name: string, args: string[]) => {
    const result = await script(name, args);
    expect(result.code, `${name}: ${result.stderr}`).toBe(0);
    return result;
  };
  // mosquitto_pub exits 0 only once the TLS handshake verified the gateway with DIR/ca.crt and the PUBACK came.
  const publish = (message: string) => ok('connect.sh', ['--host', 'localhost', '--port', String(gw.mqttPort), '--dir', device, '--serial', serial, 'publish', '--message', message]);
  const stored = () => normalize(readFileSync(join(device, 'ca.crt'), 'utf8'));

  it('takes the new root from the bundle and still verifies the gateway after the old root is retired', async () => {
    await ok('enroll-https.sh', ['--api', api(), '--ca', join(dir.path, 'ca.crt'), '--claim-cert', join(dir.path, 'claim.crt'), '--claim-key', join(dir.path, 'claim.key'), '--serial', serial, '--out', device]);
    expect((await ok('trust-update.sh', ['--api', api(), '--dir', device])).stderr).toContain('unchanged');

    const newRoot = (await rotateCa(gw, 'root', 'prepare')).ca.pem;
    expect((await ok('trust-update.sh', ['--api', api(), '--dir', device])).stdout).toContain('now trusting 2 root(s)');
    expect(stored()).toEqual(normalize(gw.ca + newRoot));

    await activateNewRootAndIssuingCas(gw);
    await ok('renew-https.sh', ['--api', api(), '--dir', device, '--serial', serial]);
    await publish('{"after":"renewal"}'); // the first connection with the new certificate supersedes the old one
    await retireOldCas(gw);

    expect((await ok('trust-update.sh', ['--api', api(), '--dir', device])).stdout).toContain('now trusting 1 root(s)');
    expect(stored()).toEqual(normalize(newRoot));
    await publish('{"after":"retire"}');
    await ok('renew-https.sh', ['--api', api(), '--dir', device, '--serial', serial]);
    await publish('{"after":"second renewal"}');
    const { registry } = gw.gateway.dataDir;
    expect(await registry.queryAudit({ deviceId: serial, action: 'device.renew', result: 'ok' })).toHaveLength(2);
  }, 120_000);
});
