import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { apiRequest } from '../../cli/api-client.ts';
import { resolveServeConfig } from '../../cli/config.ts';
import { type RunningGateway, startGateway } from '../../cli/serve.ts';
import type { RotationCampaign } from '../../contract/index.ts';
import { registryFixtures } from '../helpers/registry-fixtures.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { until } from '../helpers/until.ts';

/**
 * A campaign outlives the process that runs it (README "Rotation campaigns"): stopped half way, the
 * gateway started again on the same data directory carries on where the registry says it was, and a
 * paused campaign stays paused.
 */
describe('rotation campaigns across a restart', () => {
  const dir = makeTempDir('fleetgate-rotation-restart-');
  let gateway: RunningGateway | undefined;
  afterAll(async () => {
    await gateway?.close();
    dir.remove();
  });

  const start = async () => {
    const config = resolveServeConfig({ dataDir: dir.path, host: '127.0.0.1', mqttPort: '0', apiPort: '0', hostname: 'localhost' }, { FLEETGATE_LOG_LEVEL: 'silent' });
    gateway = await startGateway(config, pino({ level: 'silent' }));
    return gateway;
  };
  const api = <T>(gw: RunningGateway, method: string, path: string, body?: unknown) =>
    apiRequest<T>({ baseUrl: gw.apiUrl.replace('localhost', '127.0.0.1'), ca: gw.dataDir.pki.pem.root, token: gw.dataDir.adminToken }, method, path, body);

  it('carries on after a restart, and a paused campaign stays paused', async () => {
    let gw = await start();
    const fixtures = registryFixtures(gw.dataDir.authorities, gw.dataDir.registry);
    const ids = Array.from({ length: 10 }, (_, i) => `restart-${i}`);
    for (const id of ids) await fixtures.createDevice(id);
    const slow = (await api<RotationCampaign>(gw, 'POST', '/v1/rotations', { select: 'ids', ids, ratePerSecond: 4 })).body;
    const paused = (await api<RotationCampaign>(gw, 'POST', '/v1/rotations', { select: 'ids', ids: ids.slice(0, 3), ratePerSecond: 1 })).body;
    expect((await api<RotationCampaign>(gw, 'POST', `/v1/rotations/${paused.id}/pause`)).body.state).toBe('paused');
    await until(async () => (await api<RotationCampaign>(gw, 'GET', `/v1/rotations/${slow.id}`)).body.progress.pending <= 8, 'the first devices to be reached');
    await gw.close();
    gateway = undefined;

    gw = await start();
    const stopped = (await api<RotationCampaign>(gw, 'GET', `/v1/rotations/${slow.id}`)).body;
    expect(stopped.state).toBe('running');
    expect(stopped.progress.selected).toBe(10);
    await until(async () => (await api<RotationCampaign>(gw, 'GET', `/v1/rotations/${slow.id}`)).body.progress.pending === 0, 'the restarted scheduler to reach the rest', 15_000);
    expect((await api<RotationCampaign>(gw, 'GET', `/v1/rotations/${slow.id}`)).body.progress).toMatchObject({ selected: 10, offline: 10 });
    const still = (await api<RotationCampaign>(gw, 'GET', `/v1/rotations/${paused.id}`)).body;
    expect(still.state).toBe('paused');
    expect(still.progress.pending).toBeGreaterThan(0);
  });
});
