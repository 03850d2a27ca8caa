import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/fleetgate-process.ts';
import { type ClusterBroker, startTestCluster, type TestCluster } from '../helpers/test-cluster.ts';
import { nextMessage } from '../helpers/test-gateway.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * `fleetgate device create` is a client of the HTTPS API, so against a PostgreSQL-backed `fleetgate
 * provisioning` it registers the device in PostgreSQL (never in a SQLite file of the data directory it reads
 * the CA and token from), audited under the caller's token, and the device connects through a `fleetgate
 * broker`. The CLI runs as its own process, asynchronously: the PostgreSQL and Redis proxies live in this one.
 */
const redisDb = 14;
let cluster: TestCluster;
let broker: ClusterBroker;
const out = makeTempDir('fleetgate-device-create-');

beforeAll(async () => {
  cluster = await startTestCluster({ redisDb, brokers: ['a'] });
  broker = cluster.brokers[0] as ClusterBroker;
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  out.remove();
});

describe('device create against a PostgreSQL cluster', () => {
  it('registers through the API, in PostgreSQL, and the device connects through a broker', async () => {
    const alice = await cluster.api<{ token: string }>('POST', '/v1/tokens', { body: { name: 'alice', role: 'admin' } });
    expect(alice.status).toBe(201);
    const dir = join(out.path, 'lab-pg-1');
    const created = await runCli(
      ['device', 'create', '--id', 'lab-pg-1', '--out', dir, '--attribute', 'site=lab', '--data-dir', cluster.dataDir, '--api', `https://localhost:${cluster.apiPort}`, '--json'],
      { FLEETGATE_TOKEN: alice.body.token },
    );
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ id: 'lab-pg-1', template: 'default', serial: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(statSync(join(dir, 'device.key')).mode & 0o777).toBe(0o600);
    // The one registry is PostgreSQL: nothing wrote a SQLite file next to the PKI.
    expect(existsSync(join(cluster.dataDir, 'fleetgate.db'))).toBe(false);

    const detail = await cluster.api<{ device: { kind: string; attributes: Record<string, string> } }>('GET', '/v1/devices/lab-pg-1');
    expect(detail.body.device).toMatchObject({ kind: 'device', attributes: { site: 'lab' } });
    const audit = await cluster.api<{ items: { actor: string; result: string }[] }>('GET', '/v1/audit?deviceId=lab-pg-1&action=device.register');
    expect(audit.body.items).toEqual([expect.objectContaining({ actor: 'operator:alice', result: 'ok' })]);

    const credential = { key: readFileSync(join(dir, 'device.key'), 'utf8'), cert: readFileSync(join(dir, 'device.crt'), 'utf8') };
    const client = await cluster.connect(broker, 'lab-pg-1', credential);
    try {
      await client.subscribeAsync('devices/lab-pg-1/#');
      const received = nextMessage(client, 'devices/lab-pg-1/telemetry');
      await client.publishAsync('devices/lab-pg-1/telemetry', '{"t":20}', { qos: 1 });
      expect(await received).toBe('{"t":20}');
    } finally {
      await client.endAsync();
    }
  });

  it('leaves nothing behind when the API refuses', async () => {
    const dir = join(out.path, 'dup');
    const again = await runCli(['device', 'create', '--id', 'lab-pg-1', '--out', dir, '--data-dir', cluster.dataDir, '--api', `https://localhost:${cluster.apiPort}`, '--json']);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stderr)).toMatchObject({ code: 'DEVICE_EXISTS' });
    expect(existsSync(join(dir, 'device.key'))).toBe(false);
  });
});
