import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { activateNewRootAndIssuingCas, retireOldCas, rotateCa, runWhileOnline } from './root-rotation.ts';
import { normalize, trustCases } from './trust-bundle-cases.ts';

/**
 * firmware-samples/c-libmosquitto follows the trust bundle (README "The trust bundle"): trust_openssl.c on
 * crafted bundles through the build/trust-check harness (the attacker's bundles included), then a device
 * that holds only the first root through a whole root rotation against a live gateway, still connecting
 * once the old root is retired.
 */
const sample = resolve(import.meta.dirname, '../../firmware-samples/c-libmosquitto');
// Its own build directory: c-libmosquitto.test.ts may run `make` in the sample at the same time.
const build = makeTempDir('fleetgate-c-build-');
const binary = join(build.path, 'fleetgate-device');
const harness = join(build.path, 'trust-check');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], timeout = 60_000): Promise<Run> {
  return new Promise((done) => {
    execFile(file, args, { timeout }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      done({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  const made = await run('make', ['-C', sample, `BUILD=${build.path}`], 180_000);
  expect(made.code, made.stderr + made.stdout).toBe(0);
}, 240_000);
afterAll(() => build.remove());

describe('c-libmosquitto: what trust_openssl.c keeps from a crafted bundle', () => {
  const dir = makeTempDir('fleetgate-c-trust-');
  afterAll(() => dir.remove());

  it('keeps what core rootsToTrust keeps (a signer must be a root), and nothing an attacker offers', async () => {
    const cases = await trustCases();
    for (const [index, c] of cases.entries()) {
      const trusted = join(dir.path, `${index}-trusted.pem`);
      const bundle = join(dir.path, `${index}-bundle.pem`);
      writeFileSync(trusted, c.trusted);
      writeFileSync(bundle, c.bundle);
      const result = await run(harness, [trusted, bundle]);
      expect(result.code, `${c.name}: ${result.stderr}`).toBe(0);
      expect(normalize(result.stdout), c.name).toEqual(normalize(c.expected.join('')));
    }
  });
});

describe('c-libmosquitto firmware sample through a root rotation', () => {
  const dir = makeTempDir('fleetgate-c-rotation-');
  const serial = 'SN-C-TRUST-1';
  const stateDir = join(dir.path, 'state');
  let gw: TestGateway;
  let args: string[];

  beforeAll(async () => {
    gw = await startTestGateway();
    const claim = await gw.issueClaim({ maxUses: 1 });
    writeFileSync(join(dir.path, 'ca.crt'), gw.ca);
    writeFileSync(join(dir.path, 'claim.crt'), claim.cert);
    writeFileSync(join(dir.path, 'claim.key'), claim.key, { mode: 0o600 });
    args = ['--host', '127.0.0.1', '--port', String(gw.mqttPort), '--ca', join(dir.path, 'ca.crt'), '--claim-cert', join(dir.path, 'claim.crt'), '--claim-key', join(dir.path, 'claim.key'), '--serial', serial, '--state-dir', stateDir, '--timeout-ms', '10000', '--max-attempts', '3', '--backoff-base-ms', '200'];
  });
  afterAll(async () => {
    await gw?.close();
    dir.remove();
  });

  const boot = async (extra: string[]) => {
    const result = await run(binary, [...args, ...extra]);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    return result;
  };
  const stored = () => normalize(readFileSync(join(stateDir, 'ca.crt'), 'utf8'));

  it('takes the new root from the bundle, renews under it, and connects with it alone after the old root is retired', async () => {
    // Enrolled while the gateway has one root: the bundle changes nothing, --ca stays the CA file.
    const first = await boot(['--telemetry-count', '1']);
    expect(first.stdout).toContain(`enrolled as ${serial}`);
    expect(first.stdout).not.toContain('trust bundle');

    // The root rotation starts while the device is online: the bundle reaches it on its open session.
    let newRoot = '';
    const second = await runWhileOnline(binary, [...args, '--telemetry-count', '10', '--telemetry-interval-ms', '500'], async () => {
      newRoot = (await rotateCa(gw, 'root', 'prepare')).ca.pem;
    });
    expect(second.code, second.stderr + second.stdout).toBe(0);
    expect(second.stdout).toContain('trust bundle: now trusting 2 root(s)');
    expect(stored()).toEqual(normalize(gw.ca + newRoot));

    await activateNewRootAndIssuingCas(gw);
    const renewed = await boot(['--renew-now', '--telemetry-count', '1']);
    expect(renewed.stdout).toContain('renewed: certificate');
    await retireOldCas(gw);

    // The bundle names only the new root now: the device drops the old one...
    const third = await boot(['--telemetry-count', '2', '--telemetry-interval-ms', '500']);
    expect(third.stdout).toContain('trust bundle: now trusting 1 root(s)');
    expect(stored()).toEqual(normalize(newRoot));
    // ... and its next boot verifies the gateway with it alone, and renews under the new device CA.
    const fourth = await boot(['--renew-now', '--telemetry-count', '1']);
    expect(fourth.stdout).toContain('renewed: certificate');
    expect(fourth.stdout).not.toContain('trust bundle');
    const { registry } = gw.gateway.dataDir;
    expect(await registry.queryAudit({ deviceId: serial, action: 'device.renew', result: 'ok' })).toHaveLength(2);
    expect((await registry.listCertificates(serial)).filter((c) => c.status === 'active')).toHaveLength(1);
  });
});
