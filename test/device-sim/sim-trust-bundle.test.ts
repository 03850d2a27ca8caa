import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaRotation } from '../../contract/index.ts';
import { type DeviceEvent, SimulatedDevice } from '../../device-sim/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * A simulated device that holds only the first root follows a whole root rotation through the retained
 * trust bundle (README "The trust bundle"), and still verifies the gateway once the old root is retired.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

async function rotate(role: 'root' | 'device' | 'claim', stage: 'prepare' | 'activate' | 'retire'): Promise<CaRotation> {
  const response = await gw.api<CaRotation>('POST', '/v1/pki/cas/rotate', { token: true, body: { role, stage } });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body;
}

describe('the simulator and the trust bundle', () => {
  it('takes the new root from the bundle during a root rotation and keeps connecting after the old one is retired', async () => {
    const claim = await gw.issueClaim({ maxUses: 1 });
    const events: DeviceEvent[] = [];
    const device = new SimulatedDevice({ serial: 'trust-sim-1', target: { url: `mqtts://127.0.0.1:${gw.mqttPort}`, ca: gw.ca }, claim, telemetryIntervalMs: 0, onEvent: (e) => events.push(e) });
    const life = device.run();
    await device.enrollmentPhase;
    expect(device.state).toBe('online');

    const newRoot = (await rotate('root', 'prepare')).ca;
    await until(() => device.trustedRoots.includes(newRoot.pem.trim()), 'the device to take the new root from the bundle');
    expect(events).toContainEqual({ type: 'trust-updated', roots: 2 });

    await rotate('root', 'activate');
    for (const role of ['device', 'claim'] as const) {
      await rotate(role, 'prepare');
      await rotate(role, 'activate');
    }
    await device.renewNow(); // onto the device CA under the new root, reconnecting with both roots
    for (const role of ['device', 'claim', 'root'] as const) await rotate(role, 'retire');

    // The bundle now names only the new root: the device drops the old one, and its next session verifies.
    await until(() => !device.trustedRoots.includes(gw.ca.trim()), 'the device to drop the retired root');
    expect(device.trustedRoots.trim()).toBe(newRoot.pem.trim());
    const renewed = await device.renewNow();
    expect(renewed.deviceId).toBe('trust-sim-1');
    expect(device.state).toBe('online');
    await device.stop();
    expect((await life).state).toBe('stopped');
  });
});
