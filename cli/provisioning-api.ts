import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type CaFact, type CertificateRequestHandler, type Clock, type EventBus, type SessionDirectory, type TrustStore } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';
import {
  type ApiApp,
  type ApiDeps,
  type ApiServerConfig,
  buildApi,
  createCertificateService,
  createFleetChecks,
  type FleetChecks,
  createPrometheusMetrics,
  createRateLimiter,
  createRevocationStatus,
  pkiDir,
  registerRotationMetrics,
  registerFleetCheckGauges,
  startApiServer,
  tokenAuth,
} from '../provisioning/index.ts';
import type { ServeConfig } from './config.ts';
import type { DataDir } from './data-dir.ts';
import { wireTrustStore } from './trust-wiring.ts';

export interface Provisioning {
  readonly certificates: CertificateRequestHandler;
  readonly prometheus: ReturnType<typeof createPrometheusMetrics>;
  /** Starts the HTTPS API with the session list it should show. */
  startApi(sessions: SessionDirectory): Promise<{ app: ApiApp; port: number }>;
  /** The same API, built but not listening: for `inject()` (tests, the generated API reference). */
  buildApi(sessions: SessionDirectory): Promise<ApiApp>;
}

/**
 * The CA side as both `serve` and `provisioning` run it: certificate service, revocation status and the API.
 * `trust` is the process's trust store (cli/trust-wiring.ts), shared with its broker; without one, the API
 * opens its own (a process with an API and no broker).
 */
export function createProvisioning(config: ServeConfig, deps: { dataDir: DataDir; events: EventBus; clock: Clock; log: Logger; trust?: TrustStore }): Provisioning {
  const { dataDir, events, clock, log } = deps;
  const { authorities, registry } = dataDir;
  const publicApi = `https://${formatHost(config.hostname)}:${config.apiPort === 0 ? 8443 : config.apiPort}`;
  const revocationUrls = { crl: `${publicApi}/v1/pki/crl`, ocsp: `${publicApi}/v1/pki/ocsp` };
  const prometheus = createPrometheusMetrics();
  registerRotationMetrics(prometheus.registry, registry);
  const certificates = createCertificateService({
    metrics: prometheus.metrics,
    registry,
    authorities,
    clock,
    revocation: revocationUrls,
    claimRateLimiter: createRateLimiter({ ratePerSecond: config.enrollRatePerClaim, burst: config.enrollRatePerClaim * 2 }),
  });
  // The gauges are registered once per process; they read the checks of the API started last.
  let checks: FleetChecks | undefined;
  registerFleetCheckGauges(prometheus.registry, { run: (options) => (checks ?? checksFor({ list: async () => [] })).run(options) }, (error) => log.warn({ err: error }, 'fleet health checks failed'));
  function checksFor(sessions: SessionDirectory): FleetChecks {
    return createFleetChecks({ registry, sessions, clock, listCas: () => checkedCas(registry) });
  }
  const apiArguments = (sessions: SessionDirectory, trust: TrustStore): [ApiServerConfig, ApiDeps] => [
    {
      host: config.host,
      port: config.apiPort,
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
      revocation: createRevocationStatus({ registry, authorities, clock, crlPath: join(pkiDir(config.dataDir), 'crl.pem') }),
      auth: tokenAuth({ adminToken: dataDir.adminToken, registry, issuers: () => trust.current().issuers }),
      authorities,
      revocationUrls,
      sessions,
      trust,
      checks: (checks = checksFor(sessions)),
    },
  ];
  // The process's trust store, or one of the API's own (followed until the API closes).
  const trustStore = async () => (deps.trust === undefined ? wireTrustStore({ registry, dataDir: config.dataDir, pem: dataDir.pki.pem, events, log }) : { trust: deps.trust, close: () => {} });
  return {
    certificates,
    prometheus,
    async startApi(sessions) {
      const { trust, close } = await trustStore();
      const api = await startApiServer(...apiArguments(sessions, trust));
      api.app.server.once('close', close);
      return api;
    },
    async buildApi(sessions) {
      const { trust, close } = await trustStore();
      const app = await buildApi(...apiArguments(sessions, trust));
      app.addHook('onClose', async () => close());
      return app;
    },
  };
}

/**
 * The CAs the fleet health checks watch: the registry's CAs (root, device, claim and cross-certificates,
 * with their rotation states), read afresh since another process may have rotated one, and the
 * manufacturer CAs registered as claim issuers (active).
 */
export async function checkedCas(registry: Registry): Promise<CaFact[]> {
  const [cas, issuers] = await Promise.all([registry.listCertificateAuthorities(), registry.listClaimIssuers()]);
  return [
    ...cas.map((ca) => ({ id: ca.id, role: ca.role, state: ca.state, subject: ca.subject, notAfter: ca.notAfter })),
    ...issuers.flatMap((claim) => {
      if (!claim.issuerPem) return [];
      const certificate = new X509Certificate(claim.issuerPem);
      return [{ id: claim.id, role: 'manufacturer' as const, state: 'active', subject: certificate.subject.replace(/\n/g, ', '), notAfter: new Date(certificate.validTo) }];
    }),
  ];
}

export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The address to print: the configured name when listening on every interface. */
export function shownHost(config: ServeConfig): string {
  return formatHost(config.host === '0.0.0.0' || config.host === '::' ? config.hostname : config.host);
}
