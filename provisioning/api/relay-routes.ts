import { X509Certificate } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { enrollmentSchemas as schemas } from '../../contract/index.ts';
import { type CertificateRequestHandler, type Clock, credentialOfCertificate, FleetgateError, type PeerCredential, type TrustedIssuers } from '../../core/index.ts';
import { type OperatorAuth, routeGuard } from './operator-auth.ts';

export interface RelayRouteDeps {
  readonly certificates: CertificateRequestHandler;
  readonly auth: OperatorAuth;
  /** Current trusted issuers (manufacturer CAs can be added while running). */
  readonly issuers: () => TrustedIssuers;
  readonly clock: Clock;
}

/**
 * POST /v1/relay/certificate-requests: how a broker running without the CA (`fleetgate broker`) answers an
 * enrollment or renewal request that a device published over MQTT. Only a `broker` credential may call it
 * (a token made per broker with `fleetgate token create --role broker`; stations and admins may not: the
 * route speaks for devices, and only a broker has seen a device's TLS session).
 *
 * Even a broker is not taken at its word: it forwards the certificate the device's session was admitted
 * with, and this process classifies that certificate itself (which CA signed it, checked by signature, and
 * what that CA's role lets it name), then the certificate service checks it against the registry (the row
 * for this exact certificate for renewal; the claim and, for a birth certificate, its bound serial for
 * enrollment), exactly as for a request arriving over HTTPS. The only thing the broker states is the serial
 * of an enrollment: the client id it bound the claim session to, which the claim's own rules then limit.
 */
export function registerRelayRoutes(fastify: FastifyInstance, deps: RelayRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { allow } = routeGuard(deps.auth);
  app.post(
    '/v1/relay/certificate-requests',
    { onRequest: allow(['broker']), bodyLimit: 64 * 1024, schema: schemas.relay },
    async (request) => {
      const body = request.body;
      const der = new Uint8Array(Buffer.from(body.certificate, 'base64'));
      const payload = new Uint8Array(Buffer.from(body.payload, 'base64'));
      const credential = relayedCredential(der, deps.issuers(), deps.clock.now());
      if (body.kind === 'enroll') {
        if (credential.kind !== 'claim') throw new FleetgateError('ENROLL_CLAIM_UNKNOWN', { detail: { presented: credential.kind } });
        return deps.certificates.enroll({
          claimKey: credential.claimKey,
          serial: body.serial,
          ...(credential.boundSerial !== undefined ? { boundSerial: credential.boundSerial } : {}),
          certificate: der,
          body: payload,
          transport: 'mqtt',
        });
      }
      if (credential.kind !== 'device') throw new FleetgateError('AUTH_CERT_UNTRUSTED', { detail: { presented: credential.kind } });
      return deps.certificates.renew({
        certificateSerial: credential.serial,
        certificateFingerprint: credential.fingerprint,
        deviceId: credential.deviceId,
        certificate: der,
        body: payload,
        transport: 'mqtt',
      });
    },
  );
}

/** The forwarded certificate, classified as an mTLS edge would (without the handshake, so dates checked here). */
function relayedCredential(der: Uint8Array, issuers: TrustedIssuers, now: Date): Exclude<PeerCredential, { kind: 'refused' }> {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(der);
  } catch {
    throw new FleetgateError('AUTH_CERT_INVALID', { detail: { reason: 'relayed certificate is not DER X.509' } });
  }
  const credential = credentialOfCertificate(certificate, issuers, now);
  if (credential.kind === 'refused') throw new FleetgateError(credential.code, { detail: { reason: credential.reason } });
  return credential;
}
