import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { assertPinnedVersions, type BrokerCluster, joinRedisCluster, startGatewayBroker, type GatewayBroker } from '../broker/index.ts';
import type { CertificateRequestHandler, Clock, EventBus, GatewayMetrics, TrustStore } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';
import type { ServeConfig } from './config.ts';

export interface BrokerNodeDeps {
  readonly registry: Registry;
  readonly events: EventBus;
  /** The event bus's Redis subscriber (cluster mode), watched with the broker's own Redis connections. */
  readonly eventSubscriber: Redis | undefined;
  /** The process's trust store (cli/trust-wiring.ts), shared with its API if it has one. */
  readonly trust: TrustStore;
  readonly certificateRequests: CertificateRequestHandler;
  readonly metrics: GatewayMetrics;
  readonly clock: Clock;
  readonly log: Logger;
}

/** The MQTT broker as both `serve` and `broker` run it: alone in memory, or a node of a Redis cluster. */
export async function startBrokerNode(config: ServeConfig, deps: BrokerNodeDeps): Promise<{ broker: GatewayBroker; cluster: BrokerCluster | undefined }> {
  const log = deps.log.child({ component: 'broker', broker: config.brokerId });
  assertPinnedVersions(); // before the Redis emitter is joined: broker/cluster/redis-cluster.ts patches it too
  const cluster =
    config.redisUrl === undefined
      ? undefined
      : joinRedisCluster({
          url: config.redisUrl,
          prefix: config.clusterName,
          brokerId: config.brokerId,
          log,
          watch: deps.eventSubscriber ? [{ name: 'events', connection: deps.eventSubscriber }] : [],
        });
  await cluster?.whenReady();
  const broker = await startGatewayBroker(
    {
      host: config.host,
      port: config.mqttPort,
      maxPacketBytes: config.maxPacketBytes,
      connectTimeoutMs: config.connectTimeoutMs,
      flow: config.flow,
    },
    {
      registry: deps.registry,
      events: deps.events,
      clock: deps.clock,
      log,
      trust: deps.trust,
      certificateRequests: deps.certificateRequests,
      metrics: deps.metrics,
      ...(cluster ? { cluster } : {}),
    },
  );
  return { broker, cluster };
}
