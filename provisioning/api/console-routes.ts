import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FleetgateError } from '../../core/index.ts';

export interface ConsoleRouteConfig {
  /** The bundled console (`console/dist`, made by `npm run build:console`); chosen by the composition root. */
  readonly distDir: string;
}

/**
 * The console is a bundle of our own files talking to this API over fetch, so the policy can forbid
 * everything else: no inline script or style (an injected `<script>` or `style=` does nothing), no
 * other origin to load from or send to, no framing (clickjacking the revoke button), no forms posting
 * elsewhere. `data:` images only, for nothing but the browser's own icons.
 */
export const consoleContentSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function secureHeaders(reply: FastifyReply): void {
  reply.header('content-security-policy', consoleContentSecurityPolicy);
  reply.header('x-content-type-options', 'nosniff');
  reply.header('referrer-policy', 'no-referrer');
  reply.header('x-frame-options', 'DENY');
  // File names carry no hash: revalidate every time (ETag makes that cheap) so an upgrade shows at once.
  reply.header('cache-control', 'no-cache');
}

/**
 * `GET /console` and its assets under `/console/`, from the directory the composition root names. The
 * console reads the documented admin API with the token the operator types in; these files hold no data.
 * Without a built bundle every console URL answers CONSOLE_NOT_BUILT, which says how to build it.
 */
export async function registerConsoleRoutes(app: FastifyInstance, config: ConsoleRouteConfig): Promise<void> {
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (_request, reply) => secureHeaders(reply));
    const schema = { hide: true };
    if (!existsSync(join(config.distDir, 'index.html'))) {
      const notBuilt = async () => {
        throw new FleetgateError('CONSOLE_NOT_BUILT', { detail: { distDir: config.distDir } });
      };
      scope.get('/console', { schema }, notBuilt);
      scope.get('/console/*', { schema }, notBuilt);
      return;
    }
    await scope.register(fastifyStatic, {
      root: config.distDir,
      prefix: '/console/',
      index: ['index.html'],
      // The bundle is ours and small: no directory listings, no redirects, and a dotfile is simply not there
      // (404 API_NOT_FOUND, as for any other missing file).
      dotfiles: 'ignore',
      redirect: false,
      cacheControl: false,
      schemaHide: true,
    });
    scope.get('/console', { schema }, (_request, reply) => reply.sendFile('index.html'));
  });
}
