import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaRotation, CertificateAuthority, CertificateAuthorityList, RotationCampaign } from '../../contract/index.ts';
import { type DeviceEvent, SimulatedDevice } from '../../device-sim/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * Moving a device CA's fleet in one campaign (README "Rotating certificates and CAs", runbook step 3):
 * prepare and activate a new device CA, `--select ca=<old>` tells every device of the old CA to renew,
 * the live devices come back with certificates from the new CA, and `retire` is then accepted.
 */
describe('a rotation campaign moves a device CA\'s devices', () => {
  let gw: TestGateway;
  const sims: SimulatedDevice[] = [];
  const events = new Map<string, DeviceEvent[]>();

  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await Promise.all(sims.map((sim) => sim.stop()));
    await gw?.close();
  });

  const cas = async (): Promise<CertificateAuthority[]> => [...(await gw.api<CertificateAuthorityList>('GET', '/v1/pki/cas', { token: true })).body.items];
  const rotate = (role: 'device' | 'claim' | 'root', stage: 'prepare' | 'activate' | 'retire') =>
    gw.api<CaRotation & { code?: string; message?: string }>('POST', '/v1/pki/cas/rotate', { token: true, body: { role, stage } });
  const issuerOf = (pem: string, all: CertificateAuthority[]) => {
    const leaf = new X509Certificate(pem);
    return all.find((ca) => ca.role === 'device' && leaf.checkIssued(new X509Certificate(ca.pem)) && leaf.verify(new X509Certificate(ca.pem).publicKey))?.id;
  };

  it('selects by the old CA, renews every live device onto the new one, and retire then succeeds', async () => {
    const claim = await gw.issueClaim({ maxUses: 10 });
    for (const serial of ['ca-move-1', 'ca-move-2', 'ca-move-3']) {
      const list: DeviceEvent[] = [];
      events.set(serial, list);
      const sim = new SimulatedDevice({ serial, target: { url: `mqtts://127.0.0.1:${gw.mqttPort}`, ca: gw.ca }, claim, telemetryIntervalMs: 0, onEvent: (event) => list.push(event) });
      sims.push(sim);
      void sim.run();
    }
    await Promise.all(sims.map((sim) => sim.enrollmentPhase));
    const before = await cas();
    const old = before.find((ca) => ca.role === 'device' && ca.state === 'active') as CertificateAuthority;
    const root = before.find((ca) => ca.role === 'root' && ca.state === 'active') as CertificateAuthority;
    const claimCa = before.find((ca) => ca.role === 'claim' && ca.state === 'active') as CertificateAuthority;
    for (const sim of sims) expect(issuerOf(sim.certificate?.certificate ?? '', before)).toBe(old.id);

    expect((await rotate('device', 'prepare')).status).toBe(200);
    const activated = (await rotate('device', 'activate')).body;
    expect((await rotate('device', 'retire')).body.code).toBe('PKI_CA_IN_USE');

    // Selectors that cannot move devices are refused with what to do instead.
    const refusedClaim = await gw.api<{ code: string; message: string }>('POST', '/v1/rotations', { token: true, body: { select: `ca=${claimCa.id}` } });
    expect(refusedClaim.body).toMatchObject({ code: 'ROTATION_SELECTOR_INVALID', message: expect.stringContaining('claim CA') });
    // The root selects the devices of every device CA under it: the same three (the new CA has issued nothing yet).
    const byRoot = await gw.api<RotationCampaign>('POST', '/v1/rotations', { token: true, body: { select: `ca=${root.id}` } });
    expect(byRoot.body.progress.selected).toBe(3);
    await gw.api('POST', `/v1/rotations/${byRoot.body.id}/close`, { token: true });

    const started = await gw.api<RotationCampaign>('POST', '/v1/rotations', { token: true, body: { select: `ca=${old.id}`, ratePerSecond: 20 } });
    expect(started.status).toBe(201);
    expect(started.body).toMatchObject({ selector: `ca=${old.id}`, progress: { selected: 3 } });
    for (const [serial, list] of events) {
      await until(() => list.some((event) => event.type === 'renewed'), `${serial} to renew and reconnect`);
    }
    await until(async () => (await gw.api<RotationCampaign>('GET', `/v1/rotations/${started.body.id}`, { token: true })).body.state === 'completed', 'the campaign to complete', 10_000);
    const after = await cas();
    for (const sim of sims) expect(issuerOf(sim.certificate?.certificate ?? '', after)).toBe(activated.ca.id);

    // The old certificates were superseded when each device reconnected: nothing holds the old CA any more.
    await until(async () => (await rotate('device', 'retire')).status === 200, 'the old device CA to retire');
    expect((await cas()).find((ca) => ca.id === old.id)?.state).toBe('retired');
    expect(sims.every((sim) => sim.state === 'online')).toBe(true);
  });
});
