import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { type CertificateView, classifyPeer, classifyRenewalPeer, FleetgateError, type PeerCredential, type TrustedIssuers } from '../../core/index.ts';

/** A verified client credential of one kind, with the certificate (DER) it was read from. */
export type ClientCredentialOf<K extends 'claim' | 'device'> = Extract<PeerCredential, { kind: K }> & { readonly certificate: Uint8Array };

/**
 * The TLS client certificate of an HTTPS request, classified exactly as the broker does. The API server
 * asks for a certificate but does not require one (health checks and operators with tokens have none), so
 * routes that need one call this and refuse with a coded error.
 */
export function requireClientCredential<K extends 'claim' | 'device'>(request: FastifyRequest, issuers: TrustedIssuers, kind: K): ClientCredentialOf<K> {
  const socket = peerSocket(request);
  return credentialOfKind(classifyPeer(socket, issuers), kind);
}

/**
 * The client certificate of POST /v1/renew and EST simplereenroll, the only routes where an expired device
 * certificate is accepted (README "Renewal after expiry"); whether it is, is decided by classifyRenewalPeer
 * (core/renewal-after-expiry.ts) alone. `afterExpiry` tells the renewal use-case, which applies the
 * template's grace and the once-only rule.
 */
export function requireRenewalCredential(request: FastifyRequest, issuers: TrustedIssuers, now: Date): ClientCredentialOf<'device'> & { readonly afterExpiry: boolean } {
  const peer = classifyRenewalPeer(peerSocket(request), issuers, now);
  return { ...credentialOfKind(peer, 'device'), afterExpiry: peer.afterExpiry };
}

function peerSocket(request: FastifyRequest): TLSSocket {
  const socket = request.raw.socket as TLSSocket;
  if (typeof socket.getPeerX509Certificate !== 'function') throw new FleetgateError('API_CLIENT_CERT_REQUIRED');
  return socket;
}

function credentialOfKind<K extends 'claim' | 'device'>(peer: { credential: PeerCredential; certificate: CertificateView | undefined }, kind: K): ClientCredentialOf<K> {
  const { credential, certificate } = peer;
  if (credential.kind === 'refused') {
    if (credential.code === 'AUTH_NO_CLIENT_CERT') throw new FleetgateError('API_CLIENT_CERT_REQUIRED');
    throw new FleetgateError(credential.code, { detail: { reason: credential.reason } });
  }
  if (credential.kind !== kind) {
    throw new FleetgateError(kind === 'claim' ? 'ENROLL_CLAIM_UNKNOWN' : 'AUTH_CERT_UNTRUSTED', { detail: { presented: credential.kind } });
  }
  if (certificate === undefined) throw new FleetgateError('API_CLIENT_CERT_REQUIRED');
  return { ...(credential as Extract<PeerCredential, { kind: K }>), certificate: certificate.raw };
}
