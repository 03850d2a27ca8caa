import type { FastifyInstance } from 'fastify';
import type { Registry } from '../../registry/index.ts';
import type { RevocationStatus } from '../revocation-status.ts';

/** Public PKI endpoints: CA certificate, CRL (DER, RFC 5280) and OCSP (RFC 6960 §A.1, POST). */
export function registerPkiRoutes(app: FastifyInstance, deps: { rootPem: string; revocation: RevocationStatus; registry: Registry }): void {
  app.addContentTypeParser('application/ocsp-request', { parseAs: 'buffer', bodyLimit: 8 * 1024 }, (_request, body, done) => done(null, body));

  app.get('/v1/pki/ca', { schema: { tags: ['pki'], summary: 'Root CA certificate (PEM)' } }, async (_request, reply) => reply.type('application/x-pem-file').send(deps.rootPem));

  app.get('/v1/pki/crl', { schema: { tags: ['pki'], summary: 'CRL of the device CA (DER)' } }, async (_request, reply) => {
    const crl = await deps.revocation.crl();
    return reply.type('application/pkix-crl').send(Buffer.from(crl.der));
  });

  app.post('/v1/pki/ocsp', { schema: { tags: ['pki'], summary: 'OCSP responder for device and service certificates' } }, async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? new Uint8Array(request.body) : new Uint8Array();
    const { response, refusal } = await deps.revocation.ocsp(body);
    // OCSP clients understand only OCSP responses, so a malformed request is answered in kind (RFC 6960 §2.3).
    if (refusal) await deps.registry.appendAudit({ actor: `api@${request.ip}`, action: 'pki.ocsp', result: 'refused', code: refusal });
    return reply.type('application/ocsp-response').header('cache-control', 'max-age=60').send(Buffer.from(response));
  });
}
