import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';
import { type CertificateRequestHandler, type Clock, errorCatalogue, type ErrorCode, type EventBus, isFleetgateError, type RevocationUrls, snapshotSecureContext, type SessionDirectory, type TrustSource } from '../../core/index.ts';
import { registerCheckRoutes } from './check-routes.ts';
import { registerFleetRoutes } from './fleet-routes.ts';
import type { FleetChecks } from '../fleet-check-collector.ts';
import { registerSecurityRoutes } from './security-routes.ts';
import type { Registry } from '../../registry/index.ts';
import { isAudited } from '../audited.ts';
import { createEdgeRefusalAudit } from './edge-refusal-audit.ts';
import { registerAdminRoutes } from './admin-routes.ts';
import { registerConsoleRoutes } from './console-routes.ts';
import { registerDocsRoutes } from './docs-routes.ts';
import { registerRelayRoutes } from './relay-routes.ts';
import { registerEnrollmentRoutes } from './enrollment-routes.ts';
import { registerEstRoutes } from './est-routes.ts';
import { registerPkiRoutes } from './pki-routes.ts';
import { registerRotationRoutes } from './rotation-routes.ts';
import { createRotationScheduler } from '../rotation-scheduler.ts';
import type { RevocationStatus } from '../revocation-status.ts';
import type { OperatorAuth } from './operator-auth.ts';
import type { CertificateAuthorities } from '../certificate-authorities.ts';

export interface ApiServerConfig {
  readonly host: string;
  readonly port: number;
  /** Requests per minute per client address, on every route. */
  readonly rateLimitPerMinute: number;
  /** The built web console to serve at /console (`console/dist`); without it there is no /console. */
  readonly consoleDir?: string;
}

export interface ApiDeps {
  readonly registry: Registry;
  readonly log: Logger;
  readonly clock: Clock;
  readonly certificates: CertificateRequestHandler;
  readonly events: EventBus;
  readonly revocation: RevocationStatus;
  /** Prometheus text exposition for GET /metrics. */
  readonly metricsText: () => Promise<string>;
  readonly auth: OperatorAuth;
  /** Every CA with its key: the active ones sign claims, devices, services and operators (README "Rotating certificates and CAs"). */
  readonly authorities: CertificateAuthorities;
  /** CRL and OCSP URLs written into service certificates. */
  readonly revocationUrls: RevocationUrls;
  /** Live MQTT sessions: the broker's in the all-in-one process; a provisioning-only process lists none. */
  readonly sessions: SessionDirectory;
  /** The process's trusted CAs (core/trust-store.ts), shared with the MQTT listener: followed for new handshakes. */
  readonly trust: TrustSource;
  /** Fleet health checks (GET /v1/checks), over the same session list. */
  readonly checks: FleetChecks;
}

/** One year, as the HSTS preload list and most deployments use (README "TLS and HTTP hardening"). */
const hstsMaxAgeSeconds = 365 * 24 * 3600;

/**
 * The HTTPS API (README "HTTPS API"; docs/api-reference.md). Bodies are validated against their JSON schemas with unknown
 * fields refused (Fastify's default would strip them silently). Every error answer is `{code, message}`
 * from the catalogue; a 5xx never carries the internal cause; every refusal not already audited by its
 * use-case is audited here.
 */
export async function buildApi(config: ApiServerConfig, deps: ApiDeps) {
  // The CAs and the server pair come from the trust store: they rotate, and manufacturer CAs come and go, while running.
  const trustAtStart = deps.trust.current();

  const app = Fastify({
    // pino's Logger and Fastify's logger interface differ only in typing details.
    loggerInstance: deps.log.child({ component: 'api' }) as unknown as FastifyBaseLogger,
    https: {
      ...snapshotSecureContext(trustAtStart),
      // Client certificates are optional here (operators use tokens, health checks nothing); the routes
      // that need one check it and refuse with a coded error.
      requestCert: true,
      rejectUnauthorized: false,
    },
    bodyLimit: 64 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  // First hook of all, so that every answer carries them: refusals, 404s and the rate limiter's 429 too.
  app.addHook('onRequest', async (_request, reply) => {
    // RFC 6797: browsers that once reached the API over HTTPS never try plain HTTP on this host for a year.
    // No includeSubDomains: the gateway's hostname may share a parent domain with services it knows nothing of.
    reply.header('strict-transport-security', `max-age=${hstsMaxAgeSeconds}`);
    reply.header('x-content-type-options', 'nosniff');
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'fleetgate API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await registerDocsRoutes(app);
  await app.register(rateLimit, {
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    errorResponseBuilder: (_request, context) => ({
      statusCode: 429,
      code: 'API_RATE_LIMITED',
      message: `${errorCatalogue.API_RATE_LIMITED.message} (${context.after})`,
    }),
  });

  // Refusals anyone can cause at any rate (no credentials, unknown routes, malformed requests, the rate
  // limit) are audited sampled per code and second; see edge-refusal-audit.ts.
  const edgeRefusals = createEdgeRefusalAudit({ registry: deps.registry, log: deps.log, clock: deps.clock });
  app.addHook('onClose', async () => edgeRefusals.close());

  app.setNotFoundHandler(async (request, reply) => {
    await edgeRefusals.record(request, 'API_NOT_FOUND', 404);
    return reply.status(404).send({ code: 'API_NOT_FOUND', message: errorCatalogue.API_NOT_FOUND.message });
  });

  app.setErrorHandler(async (error, request, reply) => {
    let code: ErrorCode | 'API_RATE_LIMITED';
    let status: number;
    let message: string;
    const { statusCode, message: rawMessage, validation } = error as { statusCode?: number; message?: string; validation?: unknown };
    if (isFleetgateError(error)) {
      ({ code } = error);
      status = error.httpStatus;
      message = error.message;
    } else if (statusCode === 429) {
      await edgeRefusals.record(request, 'API_RATE_LIMITED', 429);
      return reply.status(429).send({ code: 'API_RATE_LIMITED', message: rawMessage ?? errorCatalogue.API_RATE_LIMITED.message });
    } else if (validation !== undefined || (statusCode !== undefined && statusCode >= 400 && statusCode < 500)) {
      code = 'REQUEST_INVALID';
      status = statusCode ?? 400;
      message = `${errorCatalogue.REQUEST_INVALID.message} (${rawMessage ?? 'invalid request'})`;
    } else {
      request.log.error({ err: error }, 'request failed');
      code = 'INTERNAL';
      status = 500;
      message = errorCatalogue.INTERNAL.message;
    }
    if (!isAudited(error)) await edgeRefusals.record(request, code as ErrorCode, status);
    return reply.status(status).send({ code, message });
  });

  app.get('/healthz', { schema: { tags: ['ops'], summary: 'Liveness and registry reachability' } }, async () => {
    await deps.registry.getPolicy('default');
    return { status: 'ok' };
  });
  app.get('/metrics', { schema: { tags: ['ops'], summary: 'Prometheus metrics' } }, async (_request, reply) =>
    reply.type('text/plain; version=0.0.4').send(await deps.metricsText()),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  registerPkiRoutes(app, { authorities: deps.authorities, revocation: deps.revocation, registry: deps.registry, auth: deps.auth, events: deps.events, clock: deps.clock });

  const currentIssuers = () => deps.trust.current().issuers;
  registerEnrollmentRoutes(app, { certificates: deps.certificates, issuers: currentIssuers, clock: deps.clock });
  registerRelayRoutes(app, { certificates: deps.certificates, auth: deps.auth, issuers: currentIssuers, clock: deps.clock });
  registerEstRoutes(app, { certificates: deps.certificates, issuers: currentIssuers, trustBundle: () => deps.authorities.trustBundle(), clock: deps.clock });
  registerAdminRoutes(app, { registry: deps.registry, auth: deps.auth, authorities: deps.authorities, clock: deps.clock, events: deps.events });
  registerSecurityRoutes(app, {
    registry: deps.registry,
    auth: deps.auth,
    authorities: deps.authorities,
    clock: deps.clock,
  });
  registerFleetRoutes(app, {
    registry: deps.registry,
    auth: deps.auth,
    events: deps.events,
    sessions: deps.sessions,
    issuing: { authorities: deps.authorities, clock: deps.clock, revocation: deps.revocationUrls },
  });

  // Rotation campaigns run in the process that serves their API, from the registry (restarts pick them up).
  const rotations = createRotationScheduler({ registry: deps.registry, events: deps.events, clock: deps.clock, log: deps.log.child({ component: 'rotations' }) });
  registerRotationRoutes(app, { registry: deps.registry, auth: deps.auth, scheduler: rotations });
  app.addHook('onReady', async () => rotations.start());
  app.addHook('onClose', async () => rotations.close());
  registerCheckRoutes(app, { auth: deps.auth, checks: deps.checks });

  if (config.consoleDir !== undefined) await registerConsoleRoutes(app, { distDir: config.consoleDir });

  const unsubscribe = deps.events.subscribe((event) => {
    // Suspensions and resumes change the CRL too (certificateHold entries come and go).
    if (event.type === 'device.status') deps.revocation.invalidate();
    // A CA rotated by any process: issue with the CA now active.
    if (event.type === 'trust.changed') deps.authorities.reload().catch((error: unknown) => deps.log.error({ err: error }, 'could not reload the CAs'));
  });
  // New handshakes use the new CA list at once; established connections are not affected.
  // A reload that finished during the awaits above is applied at once (`since`).
  const unfollowTrust = deps.trust.subscribe((snapshot) => app.server.setSecureContext(snapshotSecureContext(snapshot)), trustAtStart);
  app.addHook('onClose', async () => {
    unsubscribe();
    unfollowTrust();
  });
  return app;
}

export type ApiApp = Awaited<ReturnType<typeof buildApi>>;

export async function startApiServer(config: ApiServerConfig, deps: ApiDeps): Promise<{ app: ApiApp; port: number }> {
  const app = await buildApi(config, deps);
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  return { app, port: typeof address === 'object' && address !== null ? address.port : config.port };
}
