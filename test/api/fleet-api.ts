import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import { errorCatalogue, isFleetgateError, systemClock } from '../../core/index.ts';
import { bootstrapTokenAuth, type OperatorAuth, type OperatorRole } from '../../provisioning/index.ts';
import { registerFleetRoutes } from '../../provisioning/api/fleet-routes.ts';
import { type ApiResponse, apiRequest } from '../../cli/api-client.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';

/**
 * The fleet routes against a running test gateway. Once build-api.ts registers them, calls go to the
 * gateway's own HTTPS API; until then (and always for role tests, which need an auth that answers with a
 * chosen role) they go to a Fastify instance built here on the gateway's registry, event bus and broker
 * session list, so a revocation made through it really reaches the broker.
 */
export interface FleetApi {
  readonly baseUrl: string;
  /** True when the gateway itself serves the routes (build-api.ts wired). */
  readonly wired: boolean;
  call<T = unknown>(method: string, path: string, options?: { body?: unknown; token?: string | true }): Promise<ApiResponse<T>>;
  close(): Promise<void>;
}

/** Same Fastify options as build-api.ts where they change behaviour: no type coercion, unknown fields kept (and refused). */
const fastifyOptions = { bodyLimit: 64 * 1024, ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } } } as const;

/** Registers the fleet routes on a fresh instance; `onRoute` sees every route they add. */
export function buildFleetApp(gw: TestGateway, auth: OperatorAuth, onRoute?: (route: RouteOptions) => void, https = false): FastifyInstance {
  const { pki, registry } = gw.gateway.dataDir;
  // One type for both: the HTTPS instance's server type is the only difference, and nothing here uses it.
  const app = (https ? Fastify({ ...fastifyOptions, https: { cert: pki.server.cert, key: pki.server.key, minVersion: 'TLSv1.2' } }) : Fastify(fastifyOptions)) as unknown as FastifyInstance;
  // The mapping build-api.ts installs, minus its audit write: codes and statuses are what is under test.
  app.setErrorHandler(async (error, _request, reply) => {
    if (isFleetgateError(error)) return reply.status(error.httpStatus).send({ code: error.code, message: error.message });
    const { statusCode, validation, message } = error as { statusCode?: number; validation?: unknown; message?: string };
    if (validation !== undefined || (statusCode !== undefined && statusCode >= 400 && statusCode < 500)) {
      return reply.status(statusCode ?? 400).send({ code: 'REQUEST_INVALID', message: `${errorCatalogue.REQUEST_INVALID.message} (${message ?? ''})` });
    }
    return reply.status(500).send({ code: 'INTERNAL', message: errorCatalogue.INTERNAL.message });
  });
  app.setNotFoundHandler((_request, reply) => reply.status(404).send({ code: 'API_NOT_FOUND', message: errorCatalogue.API_NOT_FOUND.message }));
  if (onRoute) app.addHook('onRoute', onRoute);
  registerFleetRoutes(app, {
    registry,
    auth,
    events: gw.gateway.events,
    sessions: { list: async () => gw.gateway.broker.sessions() },
    issuing: { deviceCa: pki.deviceCa, clock: systemClock },
    pem: { root: pki.pem.root, deviceCa: pki.pem.deviceCa },
  });
  return app;
}

/** An auth that accepts any Bearer token and answers with `role`: for the role table only. */
export function roleAuth(role: OperatorRole): OperatorAuth {
  const bootstrap = bootstrapTokenAuth('unused');
  return {
    async authenticate(request) {
      if (!/^Bearer\s+\S+$/i.test(request.headers.authorization ?? '')) return bootstrap.authenticate(request); // the real 401
      return { actor: `operator:test-${role}`, role };
    },
  };
}

export async function startFleetApi(gw: TestGateway): Promise<FleetApi> {
  const probe = await gw.api('GET', '/v1/sessions', { token: true });
  if (probe.status !== 404) {
    return { baseUrl: `https://localhost:${gw.apiPort}`, wired: true, call: (method, path, options = {}) => gw.api(method, path, options), close: async () => {} };
  }
  const app = buildFleetApp(gw, bootstrapTokenAuth(gw.gateway.dataDir.adminToken), undefined, true);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    baseUrl: `https://localhost:${port}`,
    wired: false,
    call(method, path, options = {}) {
      const token = options.token === true ? gw.gateway.dataDir.adminToken : options.token;
      return apiRequest({ baseUrl: `https://127.0.0.1:${port}`, ca: gw.ca, ...(token ? { token } : {}) }, method, path, options.body);
    },
    close: () => app.close(),
  };
}
