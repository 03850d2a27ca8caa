import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/temp-dir.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import { expectFollowsRootRotation, gatewayWithClaimFiles, runWhileOnline } from './root-rotation.ts';
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
    const prepared = await gatewayWithClaimFiles(dir.path);
    gw = prepared.gw;
    const { files } = prepared;
    args = ['--host', '127.0.0.1', '--port', String(gw.mqttPort), '--ca', files.ca, '--claim-cert', files.claimCert, '--claim-key', files.claimKey, '--serial', serial, '--state-dir', stateDir, '--timeout-ms', '10000', '--max-attempts', '3', '--backoff-base-ms', '200'];
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
    const interval = (ms: number) => ['--telemetry-interval-ms', String(ms)];
    const telemetry = (count: number, ms: number) => ['--telemetry-count', String(count), ...(ms > 0 ? interval(ms) : [])];
    await expectFollowsRootRotation({ gw, serial, boot, stored, telemetry, bootWhileOnline: (during) => runWhileOnline(binary, [...args, ...telemetry(10, 500)], during) }, normalize);
  });
});
