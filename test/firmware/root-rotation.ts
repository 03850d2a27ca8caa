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
