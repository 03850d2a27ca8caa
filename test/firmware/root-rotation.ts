import { spawn } from 'node:child_process';
import { expect } from 'vitest';
import type { CaRotation } from '../../contract/index.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';

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
