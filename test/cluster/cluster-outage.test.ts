import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../helpers/until.ts';
import { type ClusterBroker, startTestCluster, type TestCluster } from '../helpers/test-cluster.ts';
import { closed, type ClientCredential } from '../helpers/test-gateway.ts';

/**
 * Redis taken away mid-run (every process reaches it through a proxy the test stops): brokers must refuse
 * new sessions rather than admit them unchecked, lose nothing they acknowledged, and recover by themselves.
 */
const redisDb = 12;
let cluster: TestCluster;
let a: ClusterBroker;
let b: ClusterBroker;
const open: MqttClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ redisDb });
  [a, b] = cluster.brokers as [ClusterBroker, ClusterBroker];
}, 60_000);
afterAll(async () => {
  for (const client of open) client.end(true);
  await cluster?.close();
});

/** The CONNACK return code a fresh connection gets (0 = admitted). */
async function connackCode(broker: ClusterBroker, clientId: string, credential: ClientCredential): Promise<number> {
  try {
    // Short: a probe that gets no CONNACK counts as "not admitted" and is simply tried again.
    const client = await cluster.connect(broker, clientId, credential, { connectTimeout: 5_000 });
    client.end(true);
    return 0;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

const health = async (broker: ClusterBroker) => (await fetch(`http://127.0.0.1:${broker.metricsPort}/healthz`)).status;

describe('losing Redis', () => {
  it('refuses new sessions while Redis is away, keeps every acknowledged QoS 1 message, and recovers', async ({ onTestFailed }) => {
    // Which step was slow, if this ever times out on a loaded machine.
    const started = Date.now();
    const steps: string[] = [];
    const step = (name: string) => steps.push(`${((Date.now() - started) / 1000).toFixed(1)} s ${name}`);
    onTestFailed(() => console.error(`steps before the failure:\n${steps.join('\n')}`));
    const service = await cluster.createService('backend-outage');
    const publisherCredential = await cluster.enrollDevice('sensor-out-1');
    const latecomer = await cluster.enrollDevice('sensor-out-2');
    const victimCredential = await cluster.enrollDevice('sensor-out-3');

    // The backend keeps a persistent QoS 1 subscription and goes offline: its messages queue in Redis.
    const subscriber = await cluster.connect(b, 'backend-outage', service, { clean: false });
    await subscriber.subscribeAsync('devices/sensor-out-1/telemetry', { qos: 1 });
    subscriber.end(true);
    step('backend subscribed and offline');

    // A device publishes QoS 1 continuously through broker A, reconnecting on its own (like firmware).
    const acknowledged = new Set<string>();
    const publisher = mqtt.connect(`mqtts://127.0.0.1:${a.port}`, {
      clientId: 'sensor-out-1',
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 200,
      reconnectOnConnackError: true,
      ca: cluster.ca,
      key: publisherCredential.key,
      cert: publisherCredential.cert,
    });
    publisher.on('error', () => {});
    open.push(publisher);
    let sequence = 0;
    let publishing = true;
    const loop = (async () => {
      while (publishing) {
        const message = `m-${sequence++}`;
        publisher.publish('devices/sensor-out-1/telemetry', message, { qos: 1 }, (error) => {
          if (!error) acknowledged.add(message);
        });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await until(() => acknowledged.size >= 10, 'publishing before the outage');
    step('publishing');

    // A device connected on broker B is revoked while Redis is away: the event cannot reach B.
    const victim = await cluster.connect(b, 'sensor-out-3', victimCredential);
    open.push(victim);
    const victimCut = closed(victim, 30_000);

    expect(await health(a)).toBe(200);
    await cluster.redisProxy.stop();
    step('Redis stopped');
    await until(async () => (await connackCode(a, 'sensor-out-2', latecomer)) === 3, 'broker A to refuse new sessions with CONNACK 3');
    step('broker A refuses');
    expect(await health(a), 'the load balancer health check sees it').toBe(503);
    expect(await connackCode(b, 'sensor-out-2', latecomer)).toBe(3);
    const revoked = await cluster.api('POST', '/v1/devices/sensor-out-3/revoke', { body: { reason: 'keyCompromise' } });
    step('revoked during the outage');
    expect(revoked.status).toBe(200); // the registry is the source of truth; the event is late, not lost
    const ackedDuringOutage = acknowledged.size;
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(acknowledged.size - ackedDuringOutage, 'no QoS 1 publish is acknowledged while Redis is away').toBeLessThanOrEqual(1);

    await cluster.redisProxy.start();
    step('Redis back');
    await until(async () => (await connackCode(a, 'sensor-out-2', latecomer)) === 0, 'broker A to admit sessions again', 30_000);
    step('broker A admits');
    expect(await connackCode(b, 'sensor-out-2', latecomer)).toBe(0);
    expect(await health(b)).toBe(200);
    expect(await victimCut, 'the device revoked during the outage is cut once broker B is back').toBe(true);
    step('victim cut');
    await expect(cluster.connect(b, 'sensor-out-3', victimCredential)).rejects.toMatchObject({ code: 5 });

    await until(() => acknowledged.size >= ackedDuringOutage + 10, 'publishing after the outage');
    step('publishing again');
    publishing = false;
    await loop;
    publisher.end(true);

    // The backend was offline throughout, so each acknowledged message must be queued for it in Redis
    // (aedes-persistence-redis keeps one list per client). Waiting for that first avoids racing the
    // enqueues still in flight on broker A against the backend's resume.
    const redis = new Redis(`redis://127.0.0.1:6379/${redisDb}`);
    await until(async () => (await redis.llen('outgoing:backend-outage')) >= acknowledged.size, 'every acknowledged message queued for the backend');
    redis.disconnect();
    step('all acknowledged messages queued');

    const received = new Set<string>();
    const resumed = await cluster.connect(a, 'backend-outage', service, { clean: false, connectTimeout: 30_000 });
    open.push(resumed);
    resumed.on('message', (_topic, payload) => received.add(payload.toString()));
    await until(() => [...acknowledged].every((message) => received.has(message)), 'every acknowledged message at the backend', 20_000).catch((error: unknown) => {
      step(`missing at the backend: ${[...acknowledged].filter((m) => !received.has(m)).join(', ')} (${received.size} of ${acknowledged.size} received)`);
      throw error;
    });
    expect(received.size).toBeGreaterThanOrEqual(acknowledged.size);
  }, 150_000);
});

describe('losing PostgreSQL', () => {
  it('refuses new sessions with CONNACK 3 while the registry is unreachable, keeps open sessions working, and recovers', async () => {
    const service = await cluster.createService('backend-pg');
    const device = await cluster.enrollDevice('sensor-pg-1');
    const latecomer = await cluster.enrollDevice('sensor-pg-2');
    const subscriber = await cluster.connect(b, 'backend-pg', service);
    open.push(subscriber);
    await subscriber.subscribeAsync('devices/sensor-pg-1/telemetry', { qos: 1 });
    const received: string[] = [];
    subscriber.on('message', (_topic, payload) => received.push(payload.toString()));
    const publisher = await cluster.connect(a, 'sensor-pg-1', device);
    open.push(publisher);

    await cluster.postgresProxy.stop();
    await until(async () => (await connackCode(a, 'sensor-pg-2', latecomer)) === 3, 'broker A to refuse sessions it cannot check');
    expect(await connackCode(b, 'sensor-pg-2', latecomer)).toBe(3);
    // Sessions admitted before the outage need nothing from the registry to carry telemetry.
    await publisher.publishAsync('devices/sensor-pg-1/telemetry', 'during-pg-outage', { qos: 1 });
    await until(() => received.includes('during-pg-outage'), 'telemetry across brokers during the outage');

    await cluster.postgresProxy.start();
    await until(async () => (await connackCode(a, 'sensor-pg-2', latecomer)) === 0, 'broker A to admit sessions again', 30_000);
    expect(await connackCode(b, 'sensor-pg-2', latecomer)).toBe(0);
  }, 150_000);
});
