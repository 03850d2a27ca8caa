import { pino, type Logger } from 'pino';
import { startGatewayBroker, type GatewayBroker } from '../broker/index.ts';
import { createInProcessEventBus, type EventBus, systemClock, tlsFingerprint } from '../core/index.ts';
import { createCertificateService, tokenAuth, createPrometheusMetrics, createRateLimiter, createRevocationStatus, pkiDir, startApiServer } from '../provisioning/index.ts';
import { join } from 'node:path';
import type { ServeConfig } from './config.ts';
import { type DataDir, openDataDir } from './data-dir.ts';

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

/** The all-in-one composition root: registry, CA, broker and API in one process. */
export async function startGateway(config: ServeConfig, log: Logger): Promise<RunningGateway> {
  const clock = systemClock;
  const dataDir = await openDataDir({ path: config.dataDir, hostnames: [config.hostname], clock });
  const events = createInProcessEventBus((error) => log.error({ err: error }, 'event handler failed'));
  const { pki, registry } = dataDir;
  const tls = { cert: pki.server.cert, key: pki.server.key, ca: pki.caBundle };

  const publicApi = `https://${formatHost(config.hostname)}:${config.apiPort === 0 ? 8443 : config.apiPort}`;
  const revocationUrls = { crl: `${publicApi}/v1/pki/crl`, ocsp: `${publicApi}/v1/pki/ocsp` };
  const prometheus = createPrometheusMetrics();
  const certificates = createCertificateService({
    metrics: prometheus.metrics,
    registry,
    deviceCa: pki.deviceCa,
    clock,
    revocation: revocationUrls,
    chainPem: pki.pem.deviceCa + pki.pem.root,
    claimRateLimiter: createRateLimiter({ ratePerSecond: config.enrollRatePerClaim, burst: config.enrollRatePerClaim * 2 }),
  });
  const issuers = { device: pki.pem.deviceCa, claim: [pki.pem.claimCa] };

  const broker = await startGatewayBroker(
    { host: config.host, port: config.mqttPort, tls, issuers, maxPacketBytes: config.maxPacketBytes, connectTimeoutMs: config.connectTimeoutMs },
    { registry, events, clock, log: log.child({ component: 'broker' }), certificateRequests: certificates, metrics: prometheus.metrics },
  );
  const api = await startApiServer(
    { host: config.host, port: config.apiPort, tls, rateLimitPerMinute: config.apiRateLimitPerMinute },
    {
      registry,
      log,
      clock,
      certificates,
      events,
      metricsText: () => prometheus.registry.metrics(),
      revocation: createRevocationStatus({ registry, deviceCa: pki.deviceCa, clock, crlPath: join(pkiDir(config.dataDir), 'crl.pem') }),
      auth: tokenAuth({ adminToken: dataDir.adminToken, registry, deviceCaFingerprint: await tlsFingerprint(pki.pem.deviceCa) }),
      claimCa: pki.claimCa,
      deviceCa: pki.deviceCa,
      revocationUrls,
      sessions: { list: () => broker.sessions() },
      pem: { root: pki.pem.root, deviceCa: pki.pem.deviceCa, claimCa: pki.pem.claimCa },
    },
  );

  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? config.hostname : config.host;
  return {
    mqttUrl: `mqtts://${formatHost(shownHost)}:${broker.port}`,
    apiUrl: `https://${formatHost(shownHost)}:${api.port}`,
    broker,
    dataDir,
    events,
    async close() {
      await Promise.allSettled([broker.close(), api.app.close()]);
      await events.close();
      await registry.close();
    },
  };
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
