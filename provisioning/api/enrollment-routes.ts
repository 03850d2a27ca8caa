import type { FastifyInstance } from 'fastify';
import type { CertificateRequestHandler, TrustedIssuers } from '../../core/index.ts';
import { requireClientCredential } from './client-certificate.ts';

export interface EnrollmentRouteDeps {
  readonly certificates: CertificateRequestHandler;
  /** Current trusted issuers (manufacturer CAs can be added while running). */
  readonly issuers: () => TrustedIssuers;
}

const certificateReply = {
  type: 'object',
  properties: {
    deviceId: { type: 'string' },
    serial: { type: 'string' },
    certificate: { type: 'string' },
    chain: { type: 'string' },
    notAfter: { type: 'string', format: 'date-time' },
    serverTime: { type: 'string', format: 'date-time' },
  },
} as const;

/** POST /v1/enroll (claim certificate) and POST /v1/renew (current device certificate). */
export function registerEnrollmentRoutes(app: FastifyInstance, deps: EnrollmentRouteDeps): void {
  app.post(
    '/v1/enroll',
    {
      schema: {
        tags: ['enrollment'],
        summary: 'Enroll a device with a claim certificate (TLS client certificate)',
        body: {
          type: 'object',
          required: ['csr'],
          additionalProperties: false,
          properties: { csr: { type: 'string', maxLength: 16384 }, serial: { type: 'string', maxLength: 128 }, attributes: { type: 'object', additionalProperties: { type: 'string' } } },
        },
        response: { 201: certificateReply },
      },
    },
    async (request, reply) => {
      const claim = requireClientCredential(request, deps.issuers(), 'claim');
      const answer = await deps.certificates.enroll({ claimKey: claim.claimKey, serial: claim.boundSerial, ...(claim.boundSerial ? { boundSerial: claim.boundSerial } : {}), certificate: claim.certificate, body: request.body, transport: 'https' });
      return reply.status(201).send(answer);
    },
  );

  app.post(
    '/v1/renew',
    {
      schema: {
        tags: ['enrollment'],
        summary: 'Renew the device certificate presented as TLS client certificate (new key or same key)',
        body: { type: 'object', required: ['csr'], additionalProperties: false, properties: { csr: { type: 'string', maxLength: 16384 } } },
        response: { 201: certificateReply },
      },
    },
    async (request, reply) => {
      const device = requireClientCredential(request, deps.issuers(), 'device');
      const answer = await deps.certificates.renew({ certificateSerial: device.serial, certificateFingerprint: device.fingerprint, deviceId: device.deviceId, certificate: device.certificate, body: request.body, transport: 'https' });
      return reply.status(201).send(answer);
    },
  );
}
