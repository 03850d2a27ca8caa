import Fastify from 'fastify';
import type { Logger } from 'pino';
import { errorCatalogue, isFleetgateError } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';

export interface ApiServerConfig {
  readonly host: string;
  readonly port: number;
  readonly tls: { readonly cert: string; readonly key: string; readonly ca: readonly string[] };
}

export interface ApiServerDeps {
  readonly registry: Registry;
  readonly log: Logger;
}

/**
 * The HTTPS API. For now: health and the CA certificate; enrollment, EST, admin, metrics and OpenAPI
 * arrive with their issues. Errors are always `{code, message}` from the catalogue; a 5xx never carries
 * the internal cause.
 */
export function buildApi(config: ApiServerConfig, deps: ApiServerDeps) {
  const app = Fastify({
    loggerInstance: deps.log.child({ component: 'api' }),
    https: {
      cert: config.tls.cert,
      key: config.tls.key,
      ca: [...config.tls.ca],
      minVersion: 'TLSv1.2',
      // Client certificates are optional here (enrollment and operators use them, health checks do not);
      // each route that needs one checks it.
      requestCert: true,
      rejectUnauthorized: false,
    },
    bodyLimit: 64 * 1024,
  });

  app.setErrorHandler((error, request, reply) => {
    if (isFleetgateError(error)) return reply.status(error.httpStatus).send({ code: error.code, message: error.message });
    const { statusCode, message } = error as { statusCode?: number; message?: string };
    if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
      return reply.status(statusCode).send({ code: 'REQUEST_INVALID', message: message ?? 'invalid request' });
    }
    request.log.error({ err: error }, 'request failed');
    return reply.status(500).send({ code: 'INTERNAL', message: errorCatalogue.INTERNAL.message });
  });

  app.get('/healthz', async () => {
    await deps.registry.getPolicy('default'); // proves the registry answers
    return { status: 'ok' };
  });
  app.get('/v1/pki/ca', async (_request, reply) => reply.type('application/x-pem-file').send(config.tls.ca[0]));
  return app;
}

export type ApiApp = ReturnType<typeof buildApi>;

export async function startApiServer(config: ApiServerConfig, deps: ApiServerDeps): Promise<{ app: ApiApp; port: number }> {
  const app = buildApi(config, deps);
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  return { app, port: typeof address === 'object' && address !== null ? address.port : config.port };
}
