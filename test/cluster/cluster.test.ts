import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { until } from '../helpers/until.ts';
import { type ClusterBroker, startTestCluster, type TestCluster } from '../helpers/test-cluster.ts';
import { closed, nextMessage, type ClientCredential } from '../helpers/test-gateway.ts';
import type { RotationCampaign } from '../../contract/index.ts';
import { type DeviceEvent, SimulatedDevice } from '../../device-sim/index.ts';

/**
 * Two `fleetgate broker` processes and one `fleetgate provisioning` on Redis: what a device or a backend
 * sees must not depend on which broker the load balancer picked.
 */
const redisDb = 11;
const repoRoot = join(import.meta.dirname, '..', '..');
const execFileAsync = promisify(execFile);
let cluster: TestCluster;
let a: ClusterBroker;
let b: ClusterBroker;
let service: ClientCredential;
const open: MqttClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ redisDb });
  [a, b] = cluster.brokers as [ClusterBroker, ClusterBroker];
  service = await cluster.createService('backend-1');
}, 60_000);
afterAll(async () => {
  for (const client of open) client.end(true);
  await cluster?.close();
});

const track = (client: MqttClient) => {
  open.push(client);
  return client;
};

/** Collects every message on a topic filter's matches into an array (no ordering assumptions). */
function collect(client: MqttClient): string[] {
  const seen: string[] = [];
  client.on('message', (_topic, payload) => seen.push(payload.toString()));
  return seen;
}

// Real processes on a machine shared with the rest of the suite: each step may wait for a busy core.
describe('a cluster of two brokers', { timeout: 60_000 }, () => {
  it('delivers QoS 0 and QoS 1 from a device on broker A to a subscriber on broker B', async () => {
    const device = await cluster.enrollDevice('sensor-ab-1');
    const subscriber = track(await cluster.connect(b, 'backend-1', service));
    await subscriber.subscribeAsync('devices/sensor-ab-1/#', { qos: 1 });
    const seen = collect(subscriber);
    const publisher = track(await cluster.connect(a, 'sensor-ab-1', device));
    await publisher.publishAsync('devices/sensor-ab-1/telemetry', 'qos0', { qos: 0 });
    await publisher.publishAsync('devices/sensor-ab-1/telemetry', 'qos1', { qos: 1 });
    await until(() => seen.includes('qos0') && seen.includes('qos1'), 'both messages on broker B');
    publisher.end(true);
    subscriber.end(true);
  });

  it('moves a persistent QoS 1 session from broker A to broker B without losing messages', async () => {
    const device = await cluster.enrollDevice('sensor-ab-2');
    // A client id of its own: a clean session of the same id closing on another broker at the same moment
    // would wipe this one's stored subscriptions (README: aedes cluster limits).
    const persistent = await cluster.createService('backend-persistent');
    const first = await cluster.connect(a, 'backend-persistent', persistent, { clean: false });
    await first.subscribeAsync('devices/sensor-ab-2/telemetry', { qos: 1 });
    await first.endAsync();

    const publisher = track(await cluster.connect(b, 'sensor-ab-2', device));
    // A subscription made on broker A reaches broker B's topic matcher by broadcast (aedes-persistence) a few
    // milliseconds later: wait until B queues for the offline session before counting.
    const redis = new Redis(`redis://127.0.0.1:6379/${redisDb}`);
    await until(async () => {
      await publisher.publishAsync('devices/sensor-ab-2/telemetry', 'probe', { qos: 1 });
      return (await redis.llen('outgoing:backend-persistent')) > 0;
    }, 'broker B to know the subscription made on broker A');
    redis.disconnect();
    const sent = Array.from({ length: 20 }, (_, i) => `offline-${i}`);
    for (const message of sent) await publisher.publishAsync('devices/sensor-ab-2/telemetry', message, { qos: 1 });

    const seen: string[] = [];
    // Listening before CONNACK: the queued messages can come in the same read as the CONNACK.
    const resumed = track(await cluster.connect(b, 'backend-persistent', persistent, { clean: false }, (client) => client.on('message', (_topic, payload) => seen.push(payload.toString()))));
    await until(() => sent.every((message) => seen.includes(message)), 'all 20 queued messages after the move');
    resumed.end(true);
    publisher.end(true);
  });

  it('shows a retained message set through broker A to a subscriber on broker B', async () => {
    const device = await cluster.enrollDevice('sensor-ab-3');
    const publisher = track(await cluster.connect(a, 'sensor-ab-3', device));
    await publisher.publishAsync('devices/sensor-ab-3/state', 'on', { qos: 1, retain: true });
    publisher.end(true);
    const subscriber = track(await cluster.connect(b, 'backend-1', service));
    const retained = nextMessage(subscriber, 'devices/sensor-ab-3/state', 5_000);
    await subscriber.subscribeAsync('devices/sensor-ab-3/state', { qos: 1 });
    expect(await retained).toBe('on');
    subscriber.end(true);
  });

  it('cuts a revoked device on whichever broker holds it, and both brokers refuse it afterwards', async () => {
    const device = await cluster.enrollDevice('sensor-ab-4');
    const client = track(await cluster.connect(b, 'sensor-ab-4', device));
    const sessions = await cluster.api<{ items: { clientId: string; broker: string }[] }>('GET', '/v1/sessions');
    expect(sessions.body.items).toContainEqual(expect.objectContaining({ clientId: 'sensor-ab-4', broker: 'b' }));

    const cut = closed(client, 5_000);
    const revoked = await cluster.api('POST', '/v1/devices/sensor-ab-4/revoke', { body: { reason: 'keyCompromise' } });
    expect(revoked.status).toBe(200);
    expect(await cut).toBe(true);
    for (const broker of [a, b]) {
      await expect(cluster.connect(broker, 'sensor-ab-4', device)).rejects.toMatchObject({ code: 5 });
    }
  });

  it("discards a revoked device's will on its broker: never delivered on the other one, gone from the Redis will and retained stores", async () => {
    const device = await cluster.enrollDevice('sensor-ab-5');
    const watcher = track(await cluster.connect(a, 'backend-1', service));
    await watcher.subscribeAsync('devices/sensor-ab-5/status', { qos: 1 });
    const seen = collect(watcher);
    const will = { topic: 'devices/sensor-ab-5/status', payload: Buffer.from('offline'), qos: 1 as const, retain: true };
    const client = track(await cluster.connect(b, 'sensor-ab-5', device, { will }));
    const redis = new Redis(`redis://127.0.0.1:6379/${redisDb}`);
    try {
      // aedes-persistence-redis keeps each will under will:<broker>:<client id> until it is published or deleted.
      expect(await redis.exists('will:b:sensor-ab-5')).toBe(1);
      const cut = closed(client, 5_000);
      expect((await cluster.api('POST', '/v1/devices/sensor-ab-5/revoke', { body: { reason: 'keyCompromise' } })).status).toBe(200);
      expect(await cut).toBe(true);
      // Broker B hands a will to Redis before it closes the socket, so one would arrive before this marker.
      const marker = track(await cluster.connect(b, 'backend-1-marker', await cluster.createService('backend-1-marker')));
      await marker.publishAsync('devices/sensor-ab-5/status', 'marker', { qos: 1 });
      await until(() => seen.includes('marker'), 'the marker on broker A');
      expect(seen).toEqual(['marker']);
      expect(await redis.exists('will:b:sensor-ab-5')).toBe(0);
      expect(await redis.hexists('retained', 'devices/sensor-ab-5/status')).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('enrolls a device over MQTT through broker B (relayed to provisioning) and admits it on broker A', async () => {
    const claim = await cluster.issueClaim();
    const serial = 'sn-cluster-1';
    const keys = await deviceKeyAndCsr(serial);
    const session = track(await cluster.connect(b, serial, claim));
    await session.subscribeAsync([`$fleetgate/enroll/${serial}/accepted`, `$fleetgate/enroll/${serial}/rejected`], { qos: 1 });
    const answer = new Promise<{ topic: string; body: { certificate?: string; deviceId?: string; code?: string } }>((resolve) =>
      session.on('message', (topic, payload) => resolve({ topic, body: JSON.parse(payload.toString()) as { certificate?: string } })),
    );
    await session.publishAsync(`$fleetgate/enroll/${serial}/request`, JSON.stringify({ csr: keys.csr }), { qos: 1 });
    const reply = await answer;
    expect(reply.topic).toBe(`$fleetgate/enroll/${serial}/accepted`);
    session.end(true);

    const device = track(await cluster.connect(a, serial, { cert: reply.body.certificate as string, key: keys.key }));
    expect(device.connected).toBe(true);
    device.end(true);
  });

  it('relays a coded refusal from provisioning unchanged (a CSR that is no CSR)', async () => {
    // (A clone of an enrolled serial no longer gets this far: its claim session is refused at CONNECT.)
    const serial = 'sn-cluster-bad-csr';
    const claim = await cluster.issueClaim();
    const session = track(await cluster.connect(b, serial, claim));
    await session.subscribeAsync(`$fleetgate/enroll/${serial}/rejected`, { qos: 1 });
    const rejected = nextMessage(session, `$fleetgate/enroll/${serial}/rejected`, 10_000);
    await session.publishAsync(`$fleetgate/enroll/${serial}/request`, JSON.stringify({ csr: '-----BEGIN CERTIFICATE REQUEST-----\n@@@\n-----END CERTIFICATE REQUEST-----\n' }), { qos: 1 });
    expect(JSON.parse((await rejected) ?? '{}')).toMatchObject({ code: 'PKI_CSR_MALFORMED' });
    session.end(true);
  });

  it('runs a broker from what deploy/broker-credentials.sh gives it: no CA key, no admin token, its own broker token', async () => {
    const brokers = mkdtempSync(join(tmpdir(), 'fleetgate-brokers-'));
    try {
      // Asynchronously: this process runs the PostgreSQL and Redis proxies the cluster talks through.
      await execFileAsync('sh', [join(repoRoot, 'deploy', 'broker-credentials.sh'), 'iso'], {
        cwd: repoRoot,
        env: { ...process.env, FLEETGATE_DATA_DIR: cluster.dataDir, BROKERS_DIR: brokers, FLEETGATE_API: `https://127.0.0.1:${cluster.apiPort}` },
      });
      const own = join(brokers, 'iso');
      expect(readdirSync(join(own, 'pki')).sort()).toEqual(['ca.crt', 'claim-ca.crt', 'device-ca.crt', 'server.crt', 'server.key']);
      expect(readdirSync(own).sort()).toEqual(['broker.token', 'pki']);
      expect(statSync(join(own, 'broker.token')).mode & 0o777).toBe(0o600);
      expect(statSync(join(own, 'pki', 'server.key')).mode & 0o777).toBe(0o600);
      const tokens = await cluster.api<{ items: { name: string; role: string }[] }>('GET', '/v1/tokens');
      expect(tokens.body.items).toContainEqual(expect.objectContaining({ name: 'iso', role: 'broker' }));

      const isolated = await cluster.startBroker('iso', ['--data-dir', own], { FLEETGATE_BROKER_TOKEN_FILE: join(own, 'broker.token') });
      // Relayed enrollment works with that token, from a broker that holds nothing else.
      const serial = 'sn-isolated-1';
      const session = track(await cluster.connect(isolated, serial, await cluster.issueClaim()));
      await session.subscribeAsync(`$fleetgate/enroll/${serial}/accepted`, { qos: 1 });
      const accepted = nextMessage(session, `$fleetgate/enroll/${serial}/accepted`, 10_000);
      await session.publishAsync(`$fleetgate/enroll/${serial}/request`, JSON.stringify({ csr: (await deviceKeyAndCsr(serial)).csr }), { qos: 1 });
      expect(JSON.parse((await accepted) ?? '{}')).toMatchObject({ deviceId: serial });
      session.end(true);
    } finally {
      rmSync(brokers, { recursive: true, force: true });
    }
  });

  it('spreads connections over the workers of `fleetgate broker --workers 2`, which share one port', async () => {
    const workers = await cluster.startBroker('w', ['--workers', '2']);
    expect(workers.process.readyLine).toMatch(/broker=w workers=2/);
    const clients = [];
    for (const id of ['sensor-w-1', 'sensor-w-2']) clients.push(track(await cluster.connect(workers, id, await cluster.enrollDevice(id))));
    const sessions = await cluster.api<{ items: { clientId: string; broker: string }[] }>('GET', '/v1/sessions');
    const holders = sessions.body.items.filter((s) => s.clientId.startsWith('sensor-w-')).map((s) => s.broker);
    expect(holders.sort()).toEqual(['w-1', 'w-2']);
    for (const client of clients) client.end(true);
  });

  it('answers PROVISIONING_UNAVAILABLE, with an audit entry, when a broker cannot reach provisioning', async () => {
    // Port 1 on loopback: nothing listens there. The later --provisioning-url wins over the helper's.
    const stranded = await cluster.startBroker('stranded', ['--provisioning-url', 'https://localhost:1']);
    const claim = await cluster.issueClaim();
    const serial = 'sn-stranded-1';
    const session = track(await cluster.connect(stranded, serial, claim));
    await session.subscribeAsync(`$fleetgate/enroll/${serial}/rejected`, { qos: 1 });
    const rejected = nextMessage(session, `$fleetgate/enroll/${serial}/rejected`, 10_000);
    await session.publishAsync(`$fleetgate/enroll/${serial}/request`, JSON.stringify({ csr: (await deviceKeyAndCsr(serial)).csr }), { qos: 1 });
    expect(JSON.parse((await rejected) ?? '{}')).toMatchObject({ code: 'PROVISIONING_UNAVAILABLE' });
    session.end(true);

    await until(async () => {
      const audit = await cluster.api<{ items: { code: string | null; result: string }[] }>('GET', `/v1/audit?deviceId=${serial}&action=device.enroll`);
      return audit.body.items.some((entry) => entry.result === 'refused' && entry.code === 'PROVISIONING_UNAVAILABLE');
    }, 'the refusal in the audit trail');
    await stranded.process.stop();
  });
  it('runs a rotation campaign across brokers: the live device renews through its broker, the offline one gets the command on the other broker', async () => {
    const claim = await cluster.issueClaim();
    const events: DeviceEvent[] = [];
    const live = new SimulatedDevice({ serial: 'sensor-camp-1', target: { url: `mqtts://127.0.0.1:${a.port}`, ca: cluster.ca }, claim, telemetryIntervalMs: 0, onEvent: (event) => events.push(event) });
    void live.run();
    await live.enrollmentPhase;
    expect(live.state).toBe('online');
    const offline = await cluster.enrollDevice('sensor-camp-2');

    const started = await cluster.api<RotationCampaign>('POST', '/v1/rotations', { body: { select: 'ids', ids: ['sensor-camp-1', 'sensor-camp-2'], ratePerSecond: 10 } });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    // The command reached broker A's session over Redis, and the device renewed through broker A's relay.
    await until(() => events.some((event) => event.type === 'renewed'), 'the live device on broker A to renew');
    // The offline device comes back on broker B and finds the command waiting for its subscription.
    const client = track(await cluster.connect(b, 'sensor-camp-2', offline));
    const command = nextMessage(client, '$fleetgate/certs/sensor-camp-2/rotate', 10_000);
    await client.subscribeAsync('$fleetgate/certs/sensor-camp-2/rotate', { qos: 1 });
    expect(JSON.parse((await command) ?? '{}')).toMatchObject({ campaignId: started.body.id });
    await until(async () => {
      const progress = (await cluster.api<RotationCampaign>('GET', `/v1/rotations/${started.body.id}`)).body.progress;
      return progress.renewed === 1 && progress.notified === 2 && progress.offline === 0;
    }, 'the campaign to count one renewed and two notified');
    client.end(true);
    await live.stop();
  });

  it('follows a device CA rotation on every broker: new CA trusted after prepare, old certificates refused after retire (PostgreSQL)', async () => {
    const rotate = async (stage: string) => cluster.api<{ ca: { id: string }; code?: string }>('POST', '/v1/pki/cas/rotate', { body: { role: 'device', stage } });
    const old = await cluster.enrollDevice('sensor-rot-1');
    const live = track(await cluster.connect(a, 'sensor-rot-1', old));
    const prepared = await rotate('prepare');
    expect(prepared.status, JSON.stringify(prepared.body)).toBe(200);
    expect((await rotate('activate')).status).toBe(200);
    // Issued by the new CA through provisioning; each broker heard trust.changed over Redis and admits it.
    const fresh = await cluster.enrollDevice('sensor-rot-2');
    for (const broker of [a, b]) {
      await until(async () => {
        try {
          (await cluster.connect(broker, 'sensor-rot-2', fresh)).end(true);
          return true;
        } catch {
          return false;
        }
      }, `broker ${broker.id} to trust the new device CA`);
    }
    expect(live.connected).toBe(true);
    expect((await rotate('retire')).body.code).toBe('PKI_CA_IN_USE');

    // Every identity of the old CA moves: the device, and the backend service of this file.
    const renew = async (id: string, credential: ClientCredential) => {
      const keys = await deviceKeyAndCsr(id);
      const renewed = await cluster.api<{ certificate: string }>('POST', '/v1/renew', { body: { csr: keys.csr }, credential });
      expect(renewed.status).toBe(201);
      const moved = { cert: renewed.body.certificate, key: keys.key };
      (await cluster.connect(b, id, moved)).end(true); // first use supersedes the old certificate
      return moved;
    };
    live.end(true);
    const moved = await renew('sensor-rot-1', old);
    service = await renew('backend-1', service);
    // The other identities earlier tests left behind are stragglers: revoked, as an operator would.
    const active = await cluster.api<{ items: { id: string }[] }>('GET', '/v1/devices?status=active&limit=1000');
    for (const { id } of active.body.items.filter((device) => !['sensor-rot-1', 'sensor-rot-2', 'backend-1'].includes(device.id))) {
      expect((await cluster.api('POST', `/v1/devices/${id}/revoke`, { body: { reason: 'superseded' } })).status).toBe(200);
    }
    const retired = await rotate('retire');
    expect(retired.status, JSON.stringify(retired.body)).toBe(200);
    for (const broker of [a, b]) {
      await until(async () => {
        try {
          (await cluster.connect(broker, 'sensor-rot-1', old)).end(true);
          return false;
        } catch (error) {
          return (error as { code?: number }).code === 5;
        }
      }, `broker ${broker.id} to refuse the retired CA's certificate`);
      (await cluster.connect(broker, 'sensor-rot-1', moved)).end(true);
    }
  });
});
