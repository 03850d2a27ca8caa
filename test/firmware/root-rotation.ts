import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { CaRotation } from '../../contract/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/** One stage of a CA rotation through the API (README "Rotating certificates and CAs"), asserted to succeed. */
export async function rotateCa(gw: TestGateway, role: 'root' | 'device' | 'claim', stage: 'prepare' | 'activate' | 'retire'): Promise<CaRotation> {
  const response = await gw.api<CaRotation>('POST', '/v1/pki/cas/rotate', { token: true, body: { role, stage } });
  expect(response.status, `${role} ${stage}: ${JSON.stringify(response.body)}`).toBe(200);
  return response.body;
}

/** Root activate, then the device and claim CAs moved under the new root (runbook steps 2 and 3, before the fleet renews). */
export async function activateNewRootAndIssuingCas(gw: TestGateway): Promise<void> {
  await rotateCa(gw, 'root', 'activate');
  for (const role of ['device', 'claim'] as const) {
    await rotateCa(gw, role, 'prepare');
    await rotateCa(gw, role, 'activate');
  }
}

/** Retires the old device CA, claim CA and root (runbook step 4): refused unless the fleet has moved. */
export async function retireOldCas(gw: TestGateway): Promise<void> {
  for (const role of ['device', 'claim', 'root'] as const) await rotateCa(gw, role, 'retire');
}

/**
 * Runs a device sample and, once it logs that its session is up (subscriptions made), runs `during` while
 * the device is still connected; resolves with its output when it exits.
 */
export async function runWhileOnline(file: string, args: string[], during: () => Promise<void>, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const online = new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('connected as')) resolve();
    });
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    await Promise.race([online, exited]);
    await during();
    const code = await exited;
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** A firmware sample's command line as the root-rotation story drives it (python-paho and c-libmosquitto share one). */
export interface SampleDevice {
  readonly gw: TestGateway;
  readonly serial: string;
  /** One boot with these extra flags, asserted to exit 0. */
  boot(extra: string[]): Promise<{ stdout: string }>;
  /** A boot that stays online long enough for `during` to run while its session is up. */
  bootWhileOnline(during: () => Promise<void>): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Flags for `count` telemetry messages `ms` apart. */
  telemetry(count: number, ms: number): string[];
  /** The CA file the device keeps in its state directory, normalised (trust-bundle-cases.ts). */
  stored(): string[];
}

/**
 * The story both MQTT samples must live through (README "The trust bundle"): enrolled under the first root,
 * the new root arrives on an open session during a root rotation, the device renews under the new device
 * CA, the old CAs retire, and the device then verifies the gateway with the new root alone.
 */
export async function expectFollowsRootRotation(device: SampleDevice, normalize: (pem: string) => string[]): Promise<void> {
  const { gw, serial } = device;
  // Enrolled while the gateway has one root: the bundle changes nothing, --ca stays the CA file.
  const first = await device.boot(device.telemetry(1, 0));
  expect(first.stdout).toContain(`enrolled as ${serial}`);
  expect(first.stdout).not.toContain('trust bundle');

  // The root rotation starts while the device is online: the bundle reaches it on its open session.
  let newRoot = '';
  const second = await device.bootWhileOnline(async () => {
    newRoot = (await rotateCa(gw, 'root', 'prepare')).ca.pem;
  });
  expect(second.code, second.stderr + second.stdout).toBe(0);
  expect(second.stdout).toContain('trust bundle: now trusting 2 root(s)');
  expect(device.stored()).toEqual(normalize(gw.ca + newRoot));

  await activateNewRootAndIssuingCas(gw);
  const renewed = await device.boot(['--renew-now', ...device.telemetry(1, 0)]);
  expect(renewed.stdout).toContain('renewed: certificate');
  await retireOldCas(gw);

  // The bundle names only the new root now: the device drops the old one...
  const third = await device.boot(device.telemetry(2, 500));
  expect(third.stdout).toContain('trust bundle: now trusting 1 root(s)');
  expect(device.stored()).toEqual(normalize(newRoot));
  // ... and its next boot verifies the gateway with it alone, and renews under the new device CA.
  const fourth = await device.boot(['--renew-now', ...device.telemetry(1, 0)]);
  expect(fourth.stdout).toContain('renewed: certificate');
  expect(fourth.stdout).not.toContain('trust bundle');
  const { registry } = gw.gateway.dataDir;
  expect(await registry.queryAudit({ deviceId: serial, action: 'device.renew', result: 'ok' })).toHaveLength(2);
  expect((await registry.listCertificates(serial)).filter((c) => c.status === 'active')).toHaveLength(1);
}

/**
 * A gateway and what a factory gives one device of a sample: the first root and a one-use claim, written
 * into `dir` as ca.crt, claim.crt and claim.key (0600), the files every sample is started with.
 */
export async function gatewayWithClaimFiles(dir: string): Promise<{ gw: TestGateway; files: { ca: string; claimCert: string; claimKey: string } }> {
  const gw = await startTestGateway();
  const claim = await gw.issueClaim({ maxUses: 1 });
  const files = { ca: join(dir, 'ca.crt'), claimCert: join(dir, 'claim.crt'), claimKey: join(dir, 'claim.key') };
  writeFileSync(files.ca, gw.ca);
  writeFileSync(files.claimCert, claim.cert);
  writeFileSync(files.claimKey, claim.key, { mode: 0o600 });
  return { gw, files };
}
