import type { Logger } from 'pino';
import { type GatewayBroker } from '../broker/index.ts';
import { createPrometheusMetrics, loadBrokerPki } from '../provisioning/index.ts';
import { systemClock } from '../core/index.ts';
import { startBrokerNode } from './broker-node.ts';
import { ConfigError, type ServeConfig } from './config.ts';
import { openConfiguredRegistry, openDataDir, registryErrorLogger } from './data-dir.ts';
import { wireEventBus, wireSessionDirectory } from './event-bus-wiring.ts';
import { createProvisioning, shownHost } from './provisioning-api.ts';
import { relayedCertificateRequests } from './relayed-certificate-requests.ts';
import { startBrokerMetricsServer } from './broker-metrics-server.ts';
import { wireTrustStore } from './trust-wiring.ts';

export interface RunningHalf {
  /** What the ready line prints, e.g. `mqtt=mqtts://…` or `api=https://…`. */
  readonly readyLine: string;
  readonly broker?: GatewayBroker;
  close(): Promise<void>;
}

/**
 * `fleetgate provisioning`: the CA, the registry's owner and the HTTPS API, without a broker. Sessions are
 * listed from the cluster's Redis (every broker reports its own there).
 */
export async function startProvisioningProcess(config: ServeConfig, log: Logger): Promise<RunningHalf> {
  const clock = systemClock;
  const dataDir = await openDataDir({ path: config.dataDir, hostnames: [config.hostname], clock, databaseUrl: config.databaseUrl, onRegistryError: registryErrorLogger(log) });
  const { events } = await wireEventBus(config, log);
  const { trust, close: unfollowTrust } = await wireTrustStore({ registry: dataDir.registry, dataDir: config.dataDir, pem: dataDir.pki.pem, events, log });
  const provisioning = createProvisioning(config, { dataDir, events, clock, log, trust });
  if (config.redisUrl === undefined) log.warn('FLEETGATE_REDIS_URL is not set: no broker can reach this process, and GET /v1/sessions lists nothing');
  const directory = wireSessionDirectory(config, { list: async () => [] });
  const api = await provisioning.startApi(directory.sessions);
  return {
    readyLine: `api=https://${shownHost(config)}:${api.port}`,
    async close() {
      await api.app.close();
      unfollowTrust();
      directory.close();
      await events.close();
      await dataDir.registry.close();
    },
  };
}

/**
 * `fleetgate broker`: one MQTT node of a cluster. It reads the shared registry (PostgreSQL, or the same
 * SQLite file on one machine), shares sessions, retained messages and events through Redis, and relays
 * enrollment and renewal requests to the provisioning API; it never holds a CA key.
 */
export async function startBrokerProcess(config: ServeConfig, log: Logger): Promise<RunningHalf> {
  const problems: string[] = [];
  if (config.redisUrl === undefined) problems.push('fleetgate broker needs FLEETGATE_REDIS_URL (--redis-url): brokers share state and revocations through Redis');
  if (config.provisioningUrl === undefined) problems.push('fleetgate broker needs FLEETGATE_PROVISIONING_URL (--provisioning-url), the HTTPS API that issues certificates');
  // Its own credential, never the admin token: a broker host holds no key to the rest of the fleet.
  const token = config.brokerToken;
  if (token === undefined) problems.push(`fleetgate broker needs FLEETGATE_BROKER_TOKEN, its own token of role broker: \`fleetgate token create --role broker --name ${config.brokerId}\``);
  if (problems.length > 0) throw new ConfigError(problems);

  const clock = systemClock;
  const pki = loadBrokerPki(config.dataDir);
  const registry = await openConfiguredRegistry({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, clock, onError: registryErrorLogger(log) });
  const { events, subscriber } = await wireEventBus(config, log);
  const prometheus = createPrometheusMetrics();
  const { trust, close: unfollowTrust } = await wireTrustStore({ registry, dataDir: config.dataDir, pem: pki.pem, events, log });
  // Every root trusted at start (both during a root rotation): restart brokers after a root is retired.
  const relay = { baseUrl: config.provisioningUrl as string, ca: trust.current().anchors.roots.join(''), token: token as string };
  const { broker, cluster } = await startBrokerNode(config, {
    registry,
    events,
    eventSubscriber: subscriber,
    trust,
    certificateRequests: relayedCertificateRequests(relay, { log: log.child({ component: 'relay' }), audit: (entry) => registry.appendAudit(entry) }),
    metrics: prometheus.metrics,
    clock,
    log,
  });
  const metricsServer =
    config.metricsPort === undefined
      ? undefined
      : await startBrokerMetricsServer({
          host: config.host,
          port: config.metricsPort,
          metricsText: () => prometheus.registry.metrics(),
          unavailableReason: () => cluster?.unavailableReason(),
        });
  return {
    readyLine: `mqtt=mqtts://${shownHost(config)}:${broker.port} broker=${config.brokerId}${metricsServer ? ` metrics=http://${shownHost(config)}:${metricsServer.port}` : ''}`,
    broker,
    async close() {
      await metricsServer?.close();
      await broker.close();
      unfollowTrust();
      await events.close();
      await registry.close();
    },
  };
}
