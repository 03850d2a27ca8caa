import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { enrollmentSchemas as schemas } from '../../contract/index.ts';
import type { CertificateRequestHandler, Clock, TrustedIssuers } from '../../core/index.ts';
import { requireClientCredential, requireRenewalCredential } from './client-certificate.ts';

export interface EnrollmentRouteDeps {
  readonly certificates: CertificateRequestHandler;
  /** Current trusted issuers (manufacturer CAs can be added while running). */
  readonly issuers: () => TrustedIssuers;
  /** Renewal after expiry is judged against this clock (core/renewal-after-expiry.ts). */
  readonly clock: Clock;
}

/** POST /v1/enroll (claim certificate) and POST /v1/renew (current device certificate); schemas in contract/enrollment.ts. */
export function registerEnrollmentRoutes(fastify: FastifyInstance, deps: EnrollmentRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.post(
    '/v1/enroll',
    { schema: schemas.enroll },
    async (request, reply) => {
      const claim = requireClientCredential(request, deps.issuers(), 'claim');
      const answer = await deps.certificates.enroll({ claimKey: claim.claimKey, serial: claim.boundSerial, ...(claim.boundSerial ? { boundSerial: claim.boundSerial } : {}), certificate: claim.certificate, body: request.body, transport: 'https' });
      return reply.status(201).send(answer);
    },
  );

  app.post(
    '/v1/renew',
    { schema: schemas.renew },
    async (request, reply) => {
      // The one route besides EST simplereenroll where an expired device certificate may be accepted.
      const device = requireRenewalCredential(request, deps.issuers(), deps.clock.now());
      const answer = await deps.certificates.renew({ certificateSerial: device.serial, certificateFingerprint: device.fingerprint, deviceId: device.deviceId, certificate: device.certificate, body: request.body, transport: 'https', afterExpiry: device.afterExpiry });
      return reply.status(201).send(answer);
    },
  );
}
