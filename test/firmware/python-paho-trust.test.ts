import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/temp-dir.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import { expectFollowsRootRotation, gatewayWithClaimFiles, runWhileOnline } from './root-rotation.ts';
import { normalize, trustCases } from './trust-bundle-cases.ts';

/**
 * firmware-samples/python-paho follows the trust bundle (README "The trust bundle"): device_trust.py on
 * crafted bundles (the attacker's included), then a device that holds only the first root through a whole
 * root rotation against a live gateway, still connecting once the old root is retired.
 */
const python = '/usr/bin/python3';
const sample = resolve(import.meta.dirname, '../../firmware-samples/python-paho');
const hasPaho = spawnSync(python, ['-c', 'import paho.mqtt, cryptography'], { stdio: 'ignore' }).status === 0;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], timeout = 60_000): Promise<Run> {
  return new Promise((done) => {
    execFile(python, ['-B', ...args], { timeout }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      done({ code, stdout, stderr });
    });
  });
}

describe.skipIf(!hasPaho)('python-paho: what device_trust.py keeps from a crafted bundle', () => {
  const dir = makeTempDir('fleetgate-py-trust-');
  afterAll(() => dir.remove());

  it('keeps what core rootsToTrust keeps (a signer must be a root), and nothing an attacker offers', async () => {
    const cases = await trustCases();
    for (const [index, c] of cases.entries()) {
      const trusted = join(dir.path, `${index}-trusted.pem`);
      const bundle = join(dir.path, `${index}-bundle.pem`);
      writeFileSync(trusted, c.trusted);
      writeFileSync(bundle, c.bundle);
      const result = await run([join(sample, 'device_trust.py'), trusted, bundle]);
      expect(result.code, `${c.name}: ${result.stderr}`).toBe(0);
      expect(normalize(result.stdout), c.name).toEqual(normalize(c.expected.join('')));
    }
  });
});

describe.skipIf(!hasPaho)('python-paho firmware sample through a root rotation', () => {
  const dir = makeTempDir('fleetgate-py-rotation-');
  const serial = 'SN-PY-TRUST-1';
  const stateDir = join(dir.path, 'state');
  let gw: TestGateway;
  let args: string[];

  beforeAll(async () => {
    const prepared = await gatewayWithClaimFiles(dir.path);
    gw = prepared.gw;
    const { files } = prepared;
    args = [join(sample, 'fleetgate_device.py'), '--host', '127.0.0.1', '--port', String(gw.mqttPort), '--ca', files.ca, '--claim-cert', files.claimCert, '--claim-key', files.claimKey, '--serial', serial, '--state-dir', stateDir, '--timeout', '10', '--max-attempts', '3', '--backoff-base', '0.2'];
  });
  afterAll(async () => {
    await gw?.close();
    dir.remove();
  });

  const boot = async (extra: string[]) => {
    const result = await run([...args, ...extra]);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    return result;
  };
  const stored = () => normalize(readFileSync(join(stateDir, 'ca.crt'), 'utf8'));

  it('takes the new root from the bundle, renews under it, and connects with it alone after the old root is retired', async () => {
    const interval = (ms: number) => ['--telemetry-interval', String(ms / 1000)];
    const telemetry = (count: number, ms: number) => ['--telemetry-count', String(count), ...(ms > 0 ? interval(ms) : [])];
    await expectFollowsRootRotation({ gw, serial, boot, stored, telemetry, bootWhileOnline: (during) => runWhileOnline(python, ['-B', ...args, ...telemetry(10, 500)], during) }, normalize);
  });
});
