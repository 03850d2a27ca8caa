import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { credentialOf, FleetgateError, type PeerCredential, type TrustedIssuers } from '../../core/index.ts';

/**
 * The TLS client certificate of an HTTPS request, classified exactly as the broker does. The API server
 * asks for a certificate but does not require one (health checks and operators with tokens have none), so
 * routes that need one call this and refuse with a coded error.
 */
export function requireClientCredential<K extends 'claim' | 'device'>(request: FastifyRequest, issuers: TrustedIssuers, kind: K): Extract<PeerCredential, { kind: K }> {
  const socket = request.raw.socket as TLSSocket;
  if (typeof socket.getPeerX509Certificate !== 'function') throw new FleetgateError('API_CLIENT_CERT_REQUIRED');
  const credential = credentialOf(socket, issuers);
  if (credential.kind === 'refused') {
    if (credential.code === 'AUTH_NO_CLIENT_CERT') throw new FleetgateError('API_CLIENT_CERT_REQUIRED');
    throw new FleetgateError(credential.code, { detail: { reason: credential.reason } });
  }
  if (credential.kind !== kind) {
    throw new FleetgateError(kind === 'claim' ? 'ENROLL_CLAIM_UNKNOWN' : 'AUTH_CERT_UNTRUSTED', { detail: { presented: credential.kind } });
  }
  return credential as Extract<PeerCredential, { kind: K }>;
}
