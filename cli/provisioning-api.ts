import { join } from 'node:path';
import type { Logger } from 'pino';
import { type CertificateRequestHandler, type Clock, type EventBus, type SessionDirectory } from '../core/index.ts';
import {
  type ApiApp,
  type ApiDeps,
  type ApiServerConfig,
  buildApi,
  createCertificateService,
  createPrometheusMetrics,
  createRateLimiter,
  createRevocationStatus,
  pkiDir,
  startApiServer,
  tokenAuth,
} from '../provisioning/index.ts';
import type { ServeConfig } from './config.ts';
import type { DataDir } from './data-dir.ts';

export interface Provisioning {
  readonly certificates: CertificateRequestHandler;
  readonly prometheus: ReturnType<typeof createPrometheusMetrics>;
  /** Starts the HTTPS API with the session list it should show. */
  startApi(sessions: SessionDirectory): Promise<{ app: ApiApp; port: number }>;
  /** The same API, built but not listening: for `inject()` (tests, the generated API reference). */
  buildApi(sessions: SessionDirectory): Promise<ApiApp>;
}

/** The CA side as both `serve` and `provisioning` run it: certificate service, revocation status and the API. */
export function createProvisioning(config: ServeConfig, deps: { dataDir: DataDir; events: EventBus; clock: Clock; log: Logger }): Provisioning {
  const { dataDir, events, clock, log } = deps;
  const { pki, registry } = dataDir;
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
  const apiArguments = (sessions: SessionDirectory): [ApiServerConfig, ApiDeps] => [
    {
      host: config.host,
      port: config.apiPort,
      tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.caBundle },
      rateLimitPerMinute: config.apiRateLimitPerMinute,
      consoleDir: config.consoleDir,
    },
    {
      registry,
      log,
      clock,
      certificates,
      events,
      metricsText: () => prometheus.registry.metrics(),
      revocation: createRevocationStatus({ registry, deviceCa: pki.deviceCa, clock, crlPath: join(pkiDir(config.dataDir), 'crl.pem') }),
      auth: tokenAuth({ adminToken: dataDir.adminToken, registry, deviceCaPem: pki.pem.deviceCa }),
      claimCa: pki.claimCa,
      deviceCa: pki.deviceCa,
      revocationUrls,
      sessions,
      pem: { root: pki.pem.root, deviceCa: pki.pem.deviceCa, claimCa: pki.pem.claimCa },
    },
  ];
  return {
    certificates,
    prometheus,
    startApi: async (sessions) => startApiServer(...apiArguments(sessions)),
    buildApi: async (sessions) => buildApi(...apiArguments(sessions)),
  };
}

export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The address to print: the configured name when listening on every interface. */
export function shownHost(config: ServeConfig): string {
  return formatHost(config.host === '0.0.0.0' || config.host === '::' ? config.hostname : config.host);
}
