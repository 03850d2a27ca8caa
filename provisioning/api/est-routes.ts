import type { FastifyInstance, FastifyReply } from 'fastify';
import { certsOnlyPkcs7Base64, type CertificateRequestHandler, type Clock, FleetgateError, type TrustedIssuers } from '../../core/index.ts';
import { requireClientCredential, requireRenewalCredential } from './client-certificate.ts';

export interface EstRouteDeps {
  readonly certificates: CertificateRequestHandler;
  /** Current trusted issuers (manufacturer CAs can be added while running). */
  readonly issuers: () => TrustedIssuers;
  /** The trust bundle (README "Rotating certificates and CAs"): every trusted root, cross-certificate and issuing CA. */
  readonly trustBundle: () => string;
  /** Renewal after expiry is judged against this clock (core/renewal-after-expiry.ts). */
  readonly clock: Clock;
}

/** RFC 7030 §4.1.3 / §4.2.3 response media type. */
const certsOnly = 'application/pkcs7-mime; smime-type=certs-only';

/** 76-character lines (RFC 2045); LF rather than CRLF, which every base64 decoder accepts and GNU base64 -d needs. */
const fold = (base64: string) => base64.replace(/(.{76})/g, '$1\n');

/**
 * EST (RFC 7030) under /.well-known/est/: cacerts, simpleenroll (claim certificate), simplereenroll
 * (current device certificate, or an expired one within its template's grace: README "Renewal after
 * expiry"). Bodies are base64 PKCS#10, one line or folded; the device serial is the
 * CSR's CN, since EST has no other place for it.
 */
export function registerEstRoutes(app: FastifyInstance, deps: EstRouteDeps): void {
  // RFC 7030 §4.2.1: "application/pkcs10", base64 with Content-Transfer-Encoding: base64.
  app.addContentTypeParser('application/pkcs10', { parseAs: 'string', bodyLimit: 32 * 1024 }, (_request, body, done) => done(null, body));

  app.get('/.well-known/est/cacerts', { schema: { tags: ['est'], summary: 'CA certificates (certs-only PKCS#7, base64)' } }, async (_request, reply) =>
    reply.header('content-type', 'application/pkcs7-mime').header('content-transfer-encoding', 'base64').send(fold(certsOnlyPkcs7Base64([deps.trustBundle()]))),
  );

  const respond = async (reply: FastifyReply, work: () => Promise<{ certificate: string }>) => {
    const answer = await work();
    return reply.header('content-type', certsOnly).header('content-transfer-encoding', 'base64').send(fold(certsOnlyPkcs7Base64([answer.certificate])));
  };
  const csrOf = (body: unknown) => {
    if (typeof body !== 'string' || body.trim() === '') throw new FleetgateError('PKI_CSR_MALFORMED', { detail: { reason: 'send a base64 PKCS#10 body with Content-Type application/pkcs10' } });
    return body;
  };
  app.post('/.well-known/est/simpleenroll', { schema: { tags: ['est'], summary: 'Enroll with the claim certificate (TLS client certificate)' } }, async (request, reply) =>
    respond(reply, async () => {
      const claim = requireClientCredential(request, deps.issuers(), 'claim');
      return deps.certificates.enroll({ claimKey: claim.claimKey, serial: claim.boundSerial, ...(claim.boundSerial ? { boundSerial: claim.boundSerial } : {}), certificate: claim.certificate, body: { csr: csrOf(request.body) }, transport: 'est' });
    }),
  );

  app.post('/.well-known/est/simplereenroll', { schema: { tags: ['est'], summary: 'Renew with the current device certificate (TLS client certificate; an expired one once, within its template\'s renewAfterExpiryDays)' } }, async (request, reply) =>
    respond(reply, async () => {
      // The one route besides POST /v1/renew where an expired device certificate may be accepted.
      const device = requireRenewalCredential(request, deps.issuers(), deps.clock.now());
      return deps.certificates.renew({ certificateSerial: device.serial, certificateFingerprint: device.fingerprint, deviceId: device.deviceId, certificate: device.certificate, body: { csr: csrOf(request.body) }, transport: 'est', afterExpiry: device.afterExpiry });
    }),
  );
}
