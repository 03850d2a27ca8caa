import { pino, type Logger } from 'pino';
import type { GatewayBroker } from '../broker/index.ts';
import { type EventBus, systemClock } from '../core/index.ts';
import { startBrokerNode } from './broker-node.ts';
import type { ServeConfig } from './config.ts';
import { type DataDir, openDataDir, registryErrorLogger } from './data-dir.ts';
import { wireEventBus, wireSessionDirectory } from './event-bus-wiring.ts';
import { createProvisioning, shownHost } from './provisioning-api.ts';
import { wireTrustStore } from './trust-wiring.ts';

export interface RunningGateway {
  readonly mqttUrl: string;
  readonly apiUrl: string;
  readonly broker: GatewayBroker;
  readonly dataDir: DataDir;
  readonly events: EventBus;
  close(): Promise<void>;
}

/** JSON logs go to stderr so that stdout carries only what a person or a script waits for. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'fleetgate' }, redact: ['*.key', '*.privateKey', '*.token', 'req.headers.authorization'] }, pino.destination(2));
}

/**
 * The all-in-one composition root: registry, CA, broker and API in one process. With FLEETGATE_REDIS_URL it
 * is also a full member of a cluster (its broker shares state with `fleetgate broker` processes).
 */
export async function startGateway(config: ServeConfig, log: Logger): Promise<RunningGateway> {
  const clock = systemClock;
  const dataDir = await openDataDir({ path: config.dataDir, hostnames: [config.hostname], clock, databaseUrl: config.databaseUrl, onRegistryError: registryErrorLogger(log) });
  const { events, subscriber } = await wireEventBus(config, log);
  // One set of trusted CAs for both listeners (MQTT and HTTPS), reloaded once per change.
  const { trust, close: unfollowTrust } = await wireTrustStore({ registry: dataDir.registry, dataDir: config.dataDir, pem: dataDir.pki.pem, events, log });
  const provisioning = createProvisioning(config, { dataDir, events, clock, log, trust });
  const { broker } = await startBrokerNode(config, {
    registry: dataDir.registry,
    events,
    eventSubscriber: subscriber,
    trust,
    certificateRequests: provisioning.certificates,
    metrics: provisioning.prometheus.metrics,
    clock,
    log,
  });
  const directory = wireSessionDirectory(config, { list: async () => broker.sessions() });
  const api = await provisioning.startApi(directory.sessions);

  return {
    mqttUrl: `mqtts://${shownHost(config)}:${broker.port}`,
    apiUrl: `https://${shownHost(config)}:${api.port}`,
    broker,
    dataDir,
    events,
    async close() {
      await Promise.allSettled([broker.close(), api.app.close()]);
      unfollowTrust();
      directory.close();
      await events.close();
      await dataDir.registry.close();
    },
  };
}
