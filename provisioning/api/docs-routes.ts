import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * Swagger UI (`@fastify/swagger-ui` 6) is a page, two script files and a stylesheet of its own, all served
 * under /docs, which then fetches /docs/json: it needs no inline script and no other origin. Its styles are
 * set through the DOM (React `style` props, which CSP does not govern), so `style-src 'self'` holds once the
 * top bar is gone (below); the icons are `data:` images in its stylesheet. "Try it out" calls this API (`connect-src 'self'`). No framing
 * (a framed "Try it out" with an operator's token is a clickjacking target), no forms posting elsewhere.
 * test/hardening/http-headers.test.ts renders the page in Chromium and fails on any CSP violation.
 */
export const docsContentSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function docsHeaders(reply: FastifyReply): void {
  reply.header('content-security-policy', docsContentSecurityPolicy);
  reply.header('x-frame-options', 'DENY'); // frame-ancestors for browsers that predate CSP 2
  reply.header('referrer-policy', 'no-referrer');
}

/** `GET /docs` (the browsable API reference) and its assets, each answer with the headers above. */
export async function registerDocsRoutes(app: FastifyInstance): Promise<void> {
  // A scope of its own, so the hook covers the plugin's routes and its static files and nothing else.
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (_request, reply) => docsHeaders(reply));
    // BaseLayout: no top bar. Its logo is an SVG with an inline <style> (the only inline style the UI
    // needs), and its "Explore" box loads API descriptions from any URL typed in.
    await scope.register(swaggerUi, { routePrefix: '/docs', uiConfig: { layout: 'BaseLayout' } });
  });
}
