import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerRotateCommands, renderRotationLine } from '../../cli/rotate-commands.ts';
import type { RotationCampaign } from '../../contract/index.ts';
import { createCsr, generateKeyPair, renewTopics, rotateTopic } from '../../core/index.ts';
import { type DeviceEvent, SimulatedDevice } from '../../device-sim/index.ts';
import { startTestGateway, subscribeGranted, type TestGateway } from '../helpers/test-gateway.ts';
import { testDatabaseUrl, testSchemas } from '../helpers/postgres.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { until } from '../helpers/until.ts';

/**
 * Rotation campaigns end to end (README "Rotation campaigns"): a real gateway, devices over real mTLS
 * sessions (the simulator's, and bare mqtt.js ones), the scheduler, the broker's delivery and the counts
 * the API reports; all of it on an SQLite and on a PostgreSQL registry.
 */
const schemas = testSchemas();
afterAll(async () => schemas.dropAll());
const postgresUrl = () => {
  const url = new URL(testDatabaseUrl);
  url.searchParams.set('schema', schemas.fresh());
  return url.toString();
};

describe.each([
  ['SQLite', () => ({})],
  ['PostgreSQL', () => ({ FLEETGATE_DATABASE_URL: postgresUrl() })],
])('rotation campaigns on %s', (_registry, env) => {
  let gw: TestGateway;
  const sims: SimulatedDevice[] = [];
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    gw = await startTestGateway(env());
    const created = await gw.api('POST', '/v1/templates', { body: { name: 'rot', policy: 'default' }, token: true });
    expect(created.status).toBe(201);
  });

  afterAll(async () => {
    await Promise.all(sims.map((sim) => sim.stop()));
    for (const client of clients) client.end(true);
    await gw?.close();
  });

  const campaign = async (id: string) => (await gw.api<RotationCampaign>('GET', `/v1/rotations/${id}`, { token: true })).body;

  function simulated(serial: string, claim: { cert: string; key: string }, events: DeviceEvent[], enrolled?: SimulatedDevice['credential']) {
    const sim = new SimulatedDevice({
      serial,
      target: { url: `mqtts://127.0.0.1:${gw.mqttPort}`, ca: gw.ca },
      claim,
      telemetryIntervalMs: 0,
      ...(enrolled ? { enrolled } : {}),
      onEvent: (event) => events.push(event),
    });
    sims.push(sim);
    void sim.run();
    return sim;
  }

  it('attacker first: a device cannot read another device\'s rotate command, nor send one', async () => {
    const a = await gw.createDevice('rot-attacker');
    await gw.createDevice('rot-victim');
    const attacker = await gw.connect('rot-attacker', a);
    clients.push(attacker);
    expect(await subscribeGranted(attacker, [rotateTopic('rot-victim'), '$fleetgate/certs/+/rotate', rotateTopic('rot-attacker')])).toEqual([128, 128, 0]);
    // Publishing a rotate command, even to itself, is refused: MQTT 3.1.1 has no negative PUBACK, so the session is closed.
    const closed = new Promise<void>((resolve) => attacker.once('close', () => resolve()));
    attacker.publish(rotateTopic('rot-attacker'), '{"campaignId":"forged"}', { qos: 1 });
    await closed;
    await gw.waitForAudit({ action: 'mqtt.publish', result: 'refused' }, (entry) => entry.code === 'ACL_RESERVED_TOPIC');
  });

  it('counts live, offline and failing devices; offline ones get the command when they come back; close ends it', async () => {
    const claim = await gw.issueClaim({ template: 'rot', maxUses: 20 });
    const events = new Map<string, DeviceEvent[]>();
    const serials = ['live-1', 'live-2', 'live-3', 'off-1', 'off-2'];
    const devices = new Map(serials.map((serial) => {
      const list: DeviceEvent[] = [];
      events.set(serial, list);
      return [serial, simulated(serial, claim, list)] as const;
    }));
    await Promise.all([...devices.values()].map((sim) => sim.enrollmentPhase));
    for (const sim of devices.values()) expect(sim.state).toBe('online');

    // Two devices go offline, keeping their credentials.
    const offline = new Map<string, NonNullable<SimulatedDevice['credential']>>();
    for (const serial of ['off-1', 'off-2']) {
      const sim = devices.get(serial) as SimulatedDevice;
      offline.set(serial, sim.credential as NonNullable<SimulatedDevice['credential']>);
      await sim.stop();
    }

    // A failing device: online and listening, but its renewal is refused (a CSR that is not one).
    const failing = await gw.createDevice('failing-1', { template: 'rot' });
    const failingClient = await gw.connect('failing-1', failing);
    clients.push(failingClient);
    await failingClient.subscribeAsync([rotateTopic('failing-1'), renewTopics('failing-1').rejected], { qos: 1 });
    const rejected = new Promise<string>((resolve) => {
      failingClient.on('message', (topic, payload) => {
        if (topic === rotateTopic('failing-1')) failingClient.publish(renewTopics('failing-1').request, JSON.stringify({ csr: 'not a CSR' }), { qos: 1 });
        if (topic === renewTopics('failing-1').rejected) resolve(JSON.parse(payload.toString()).code as string);
      });
    });

    const started = await gw.api<RotationCampaign>('POST', '/v1/rotations', { body: { select: 'template=rot', ratePerSecond: 100 }, token: true });
    expect(started.status).toBe(201);
    const id = started.body.id;
    expect(started.body).toMatchObject({ state: 'running', selector: 'template=rot', ratePerSecond: 100, createdBy: 'operator:admin' });
    expect(started.body.progress.selected).toBe(6);

    expect(await rejected).toBe('PKI_CSR_MALFORMED');
    await until(async () => (await campaign(id)).progress.renewed === 3, 'the three live devices to renew');
    await until(async () => (await campaign(id)).progress.failed === 1, 'the failing device to count as failed');
    expect((await campaign(id)).progress).toEqual({ selected: 6, pending: 0, notified: 4, renewed: 3, failed: 1, offline: 2 });
    for (const serial of ['live-1', 'live-2', 'live-3']) {
      expect(events.get(serial)?.some((event) => event.type === 'rotate' && event.campaignId === id)).toBe(true);
      // The simulator reports `renewed` once it is back online with the new certificate.
      await until(() => events.get(serial)?.some((event) => event.type === 'renewed') ?? false, `${serial} to reconnect with its new certificate`);
    }
    await gw.waitForAudit({ action: 'rotation.notify', deviceId: 'live-1' });
    // Which devices: by outcome, from the API.
    const devicesBy = async (outcome: string) => (await gw.api<{ items: { deviceId: string }[] }>('GET', `/v1/rotations/${id}/devices?outcome=${outcome}`, { token: true })).body.items.map((d) => d.deviceId);
    expect(await devicesBy('failed')).toEqual(['failing-1']);
    expect(await devicesBy('offline')).toEqual(['off-1', 'off-2']);
    expect(await devicesBy('renewed')).toEqual(['live-1', 'live-2', 'live-3']);
    await gw.waitForAudit({ action: 'rotation.start', actor: 'operator:admin' });

    // Prometheus shows the same.
    const metrics = await gw.api<string>('GET', '/metrics');
    expect(String(metrics.body)).toContain(`fleetgate_rotation_campaign_devices{campaign="${id}",state="failed"} 1`);
    expect(String(metrics.body)).toContain(`fleetgate_rotation_campaign_devices{campaign="${id}",state="offline"} 2`);

    // The offline devices come back with their old certificates: the queued command reaches them at once.
    for (const [serial, credential] of offline) {
      const list: DeviceEvent[] = [];
      events.set(serial, list);
      simulated(serial, claim, list, credential);
    }
    await until(async () => (await campaign(id)).progress.renewed === 5, 'the offline devices to renew after reconnecting');
    expect((await campaign(id)).progress).toEqual({ selected: 6, pending: 0, notified: 6, renewed: 5, failed: 1, offline: 0 });
    for (const serial of offline.keys()) expect(events.get(serial)?.some((event) => event.type === 'rotate' && event.campaignId === id)).toBe(true);

    // The failing device keeps the campaign open until the operator closes it.
    expect((await campaign(id)).state).toBe('running');
    const closed = await gw.api<RotationCampaign>('POST', `/v1/rotations/${id}/close`, { token: true });
    expect(closed.body).toMatchObject({ state: 'closed' });
    expect(closed.body.endedAt).not.toBeNull();
    const again = await gw.api<{ code: string }>('POST', `/v1/rotations/${id}/resume`, { token: true });
    expect(again).toMatchObject({ status: 409, body: { code: 'ROTATION_CAMPAIGN_STATE' } });
    await gw.waitForAudit({ action: 'rotation.resume', result: 'refused' });
  });

  it('honours its rate, from the times the registry recorded', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `rate-${String(i).padStart(2, '0')}`);
    for (const id of ids) await gw.createDevice(id);
    const started = await gw.api<RotationCampaign>('POST', '/v1/rotations', { body: { select: 'ids', ids, ratePerSecond: 5 }, token: true });
    expect(started.status).toBe(201);
    const id = started.body.id;
    await until(async () => (await campaign(id)).progress.pending === 0, 'every device to be reached', 20_000);
    // None of them is connected: all wait for their next session.
    expect((await campaign(id)).progress).toMatchObject({ selected: 20, notified: 0, offline: 20, renewed: 0 });

    // 5/s with a burst of one: 20 devices take at least 19 intervals of 200 ms, and no second holds more
    // than 5 (6 with one at each edge of the window).
    const rows = await gw.gateway.dataDir.registry.listRotationDevices(id);
    const times = rows.map((row) => row.dispatchedAt?.getTime() ?? Number.NaN).sort((a, b) => a - b);
    expect(times.every(Number.isFinite)).toBe(true);
    expect((times.at(-1) as number) - (times[0] as number)).toBeGreaterThanOrEqual(3_800 - 50);
    for (const from of times) expect(times.filter((t) => t >= from && t < from + 1_000).length).toBeLessThanOrEqual(6);
    await gw.api('POST', `/v1/rotations/${id}/close`, { token: true });
  });

  it('pauses and resumes, and completes once every device renewed, by any transport', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `paced-${String(i).padStart(2, '0')}`);
    const credentials = [];
    for (const id of ids) credentials.push(await gw.createDevice(id));
    const started = await gw.api<RotationCampaign>('POST', '/v1/rotations', { body: { select: 'ids', ids, ratePerSecond: 4 }, token: true });
    const id = started.body.id;
    expect(started.body.progress.selected).toBe(12);

    await until(async () => (await campaign(id)).progress.pending <= 10, 'a few devices to be reached');
    const paused = await gw.api<RotationCampaign>('POST', `/v1/rotations/${id}/pause`, { token: true });
    expect(paused.body.state).toBe('paused');
    const atPause = (await campaign(id)).progress.pending;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await campaign(id)).progress.pending).toBe(atPause); // nobody more is reached while paused
    expect(atPause).toBeGreaterThan(0);
    expect((await gw.api<RotationCampaign>('POST', `/v1/rotations/${id}/resume`, { token: true })).body.state).toBe('running');
    await until(async () => (await campaign(id)).progress.pending === 0, 'every device to be reached after the resume', 20_000);
    await gw.waitForAudit({ action: 'rotation.pause', actor: 'operator:admin' });

    // Renewal by any transport counts: here every device renews over HTTPS (POST /v1/renew), never having
    // seen the command, and the campaign completes by itself.
    for (const [index, credential] of credentials.entries()) {
      const csr = await createCsr(await generateKeyPair(), ids[index] as string);
      expect((await gw.api('POST', '/v1/renew', { body: { csr }, credential })).status).toBe(201);
    }
    await until(async () => (await campaign(id)).state === 'completed', 'the campaign to complete', 10_000);
    expect((await campaign(id)).progress).toMatchObject({ selected: 12, renewed: 12, offline: 0, failed: 0, pending: 0 });
    await gw.waitForAudit({ action: 'rotation.complete', actor: 'scheduler' });
  });

  it('refuses what it cannot select, with a code, and audits it', async () => {
    const cases: [unknown, number, string][] = [
      [{ select: 'ca=0123456789abcdef' }, 400, 'ROTATION_SELECTOR_INVALID'],
      [{ select: 'template=nope' }, 404, 'TEMPLATE_NOT_FOUND'],
      [{ select: 'colour=blue' }, 400, 'ROTATION_SELECTOR_INVALID'],
      [{ select: 'ids', ids: ['ghost-1', 'live-1'] }, 400, 'ROTATION_SELECTOR_INVALID'],
      [{ select: 'expires-within=1h' }, 409, 'ROTATION_SELECTION_EMPTY'],
      [{ select: 'template=rot', ratePerSecond: 0 }, 400, 'REQUEST_INVALID'],
    ];
    for (const [body, status, code] of cases) {
      const answer = await gw.api<{ code: string }>('POST', '/v1/rotations', { body, token: true });
      expect({ body, status: answer.status, code: answer.body.code }).toEqual({ body, status, code });
    }
    await gw.waitForAudit({ action: 'rotation.start', result: 'refused' }, (entry) => entry.code === 'ROTATION_SELECTION_EMPTY');
    expect((await gw.api<{ code: string }>('GET', '/v1/rotations/rot-000000000000', { token: true })).body.code).toBe('ROTATION_CAMPAIGN_NOT_FOUND');
  });

  describe('fleetgate rotate', () => {
    /** Runs `fleetgate rotate <args>` in-process against the gateway's API, as the CLI would. */
    async function cli(args: string[]): Promise<string> {
      const program = new Command('fleetgate').exitOverride();
      registerRotateCommands(program);
      program.commands.forEach(function quiet(command: Command): void {
        command.exitOverride().configureOutput({ writeErr: () => {} });
        command.commands.forEach(quiet);
      });
      const chunks: string[] = [];
      const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
        chunks.push(String(chunk));
        return true;
      });
      try {
        await program.parseAsync(['rotate', ...args, '--api', `https://localhost:${gw.apiPort}`, '--data-dir', gw.dataDirPath], { from: 'user' });
      } finally {
        spy.mockRestore();
      }
      return chunks.join('');
    }

    it('starts from an id file, shows progress as a bar and as JSON, pauses, resumes and closes', async () => {
      for (const id of ['cli-1', 'cli-2', 'cli-3']) await gw.createDevice(id);
      const dir = makeTempDir();
      try {
        const file = join(dir.path, 'ids.txt');
        writeFileSync(file, '# devices of batch 7\ncli-1\n\ncli-2\ncli-3  # last\n');
        const started = JSON.parse(await cli(['start', '--select', `ids=@${file}`, '--rate', '2/s', '--json'])) as RotationCampaign;
        expect(started).toMatchObject({ selector: 'ids (3)', ratePerSecond: 2, state: 'running', progress: { selected: 3 } });

        const text = await cli(['status', started.id]);
        expect(text).toMatch(new RegExp(`^${started.id} running \\[-{24}\\] 0/3 renewed, 0 notified, 0 failed, \\d offline, \\d pending`));
        expect(text).toContain('selector  ids (3) at 2/s');
        const devices = JSON.parse(await cli(['status', started.id, '--devices', '--json'])) as { items: { deviceId: string; outcome: string }[] };
        expect(devices.items.map((d) => d.deviceId)).toEqual(['cli-1', 'cli-2', 'cli-3']);
        expect(await cli(['status', started.id, '--devices', 'renewed'])).toBe('(no devices)\n');
        const list = JSON.parse(await cli(['status', '--json'])) as { items: RotationCampaign[] };
        expect(list.items.map((c) => c.id)).toContain(started.id);
        expect(await cli(['status'])).toMatch(/ID\s+STATE\s+SELECTOR/);

        expect(JSON.parse(await cli(['pause', started.id, '--json'])).state).toBe('paused');
        expect(await cli(['resume', started.id])).toContain(`Campaign ${started.id} resumed.`);
        expect(JSON.parse(await cli(['close', started.id, '--json'])).state).toBe('closed');
        // status --watch on an ended campaign prints once and returns.
        expect(await cli(['status', started.id, '--watch'])).toContain(`${started.id} closed`);
        await expect(cli(['resume', started.id])).rejects.toMatchObject({ code: 'ROTATION_CAMPAIGN_STATE' });
        await expect(cli(['start', '--select', 'template=rot', '--rate', 'fast'])).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
      } finally {
        dir.remove();
      }
    });

    it('draws the bar from the renewed share and cuts the line to the terminal', () => {
      const campaign: RotationCampaign = {
        id: 'rot-1',
        selector: 'template=t',
        ratePerSecond: 50,
        state: 'running',
        createdBy: 'operator:admin',
        createdAt: '2030-01-01T00:00:00.000Z',
        updatedAt: '2030-01-01T00:00:00.000Z',
        endedAt: null,
        progress: { selected: 8, pending: 1, notified: 5, renewed: 4, failed: 1, offline: 2 },
      };
      expect(renderRotationLine(campaign, 200)).toBe('rot-1 running [############------------] 4/8 renewed, 5 notified, 1 failed, 2 offline, 1 pending');
      expect(renderRotationLine(campaign, 30)).toHaveLength(30);
    });
  });
});
