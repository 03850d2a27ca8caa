import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerUnderTest } from '../../bench/broker-under-test.ts';
import { type BenchCredentials, type BenchIdentity, createBenchCredentials } from '../../bench/device-credentials.ts';
import { startMinimalAedes } from '../../bench/minimal-aedes-process.ts';
import { prepareRuntime } from '../../bench/node-runtimes.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

// The suite's "minimal aedes" yardstick (bench/minimal-aedes-broker.ts) enforces what fleetgate and the suite's
// Mosquitto enforce, and nothing else: real TLS with fleetgate-issued certificates, a real MQTT client.

const dir = makeTempDir('fleetgate-minimal-aedes-');
let credentials: BenchCredentials;
let broker: BrokerUnderTest;

beforeAll(async () => {
  ({ credentials } = await createBenchCredentials({ dataDir: dir.path, count: 2, prefix: 'ma-', serviceName: 'ma-service' }));
  const runtime = prepareRuntime(Number(process.versions.node.split('.')[0]), () => {});
  broker = await startMinimalAedes({ name: `aedes-${runtime.label}`, runtime, tls: credentials.pki, serviceNames: [credentials.service.id], pinning: {} });
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  dir.remove();
});

const device = (i: number) => credentials.devices[i] as BenchIdentity;

function connect(identity: BenchIdentity, clientId = identity.id): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({ protocol: 'mqtts', host: broker.host, port: broker.port, ca: credentials.ca, cert: identity.cert, key: identity.key, clientId, protocolVersion: 4, reconnectPeriod: 0, servername: 'localhost' });
    client.once('connect', () => resolve(client));
    client.once('error', (error) => {
      client.end(true);
      reject(error);
    });
  });
}

/** The SUBACK's granted QoS for one filter; 128 is a refusal (mqtt.js rejects on it). */
async function granted(client: MqttClient, filter: string): Promise<number | undefined> {
  try {
    return (await client.subscribeAsync(filter))[0]?.qos;
  } catch (error) {
    const packet = (error as { packet?: { granted?: number[] } }).packet;
    if (packet?.granted !== undefined) return packet.granted[0];
    throw error;
  }
}

describe('minimal aedes broker', () => {
  it('refuses a client id that is not the certificate CN', async () => {
    await expect(connect(device(0), device(1).id)).rejects.toMatchObject({ code: 5 });
  });

  it('lets a device subscribe to its own subtree only, and the service to devices/#', async () => {
    const own = await connect(device(0));
    const service = await connect(credentials.service);
    try {
      expect(await granted(own, `devices/${device(0).id}/#`)).toBe(0);
      expect(await granted(own, 'devices/#')).toBe(128);
      expect(await granted(own, `devices/${device(1).id}/telemetry`)).toBe(128);
      expect(await granted(service, 'devices/#')).toBe(0);
    } finally {
      await Promise.all([own.endAsync(), service.endAsync()]);
    }
  });

  it("delivers a device's publish under its own subtree to the service, and refuses one under another device's", async () => {
    const service = await connect(credentials.service);
    const forger = await connect(device(0));
    try {
      await service.subscribeAsync('devices/#', { qos: 1 });
      const received: string[] = [];
      service.on('message', (topic) => received.push(topic));
      // aedes ends the connection of a client whose PUBLISH it refuses (authorizePublish error).
      const closed = new Promise<void>((resolve) => forger.once('close', () => resolve()));
      forger.publish(`devices/${device(1).id}/telemetry`, 'forged');
      await closed;
      const publisher = await connect(device(0));
      const delivered = new Promise((resolve) => service.once('message', resolve));
      await publisher.publishAsync(`devices/${device(0).id}/telemetry`, 'mine', { qos: 1 });
      await delivered;
      await publisher.endAsync();
      expect(received).toEqual([`devices/${device(0).id}/telemetry`]);
    } finally {
      forger.end(true);
      await service.endAsync();
    }
  });
});
