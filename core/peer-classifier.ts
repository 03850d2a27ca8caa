import { type CertificateView, classifyPeer, normaliseFingerprint, type PeerCredential, type TlsPeer, type TrustedIssuers } from './peer-identity.ts';

/**
 * What Node's `TLSSocket.getPeerCertificate(false)` gives that this needs: the SHA-256 fingerprint of the
 * leaf (`{}` without a certificate, null on a closed socket).
 */
export interface PeerCertificateSummary {
  readonly fingerprint256?: string;
}

/** A TLS peer that can also name its certificate cheaply (a Node TLSSocket can). */
export interface SummarisedTlsPeer<C extends CertificateView> extends TlsPeer<C> {
  getPeerCertificate(detailed: false): PeerCertificateSummary | null;
}

export interface ClassifiedPeer<C extends CertificateView> {
  readonly credential: PeerCredential;
  readonly certificate: C | undefined;
}

export interface PeerClassifier<C extends CertificateView> {
  /** `classifyPeer` (core/peer-identity.ts), answered from memory for a certificate already classified under the same issuers. */
  classify(peer: SummarisedTlsPeer<C>, issuers: TrustedIssuers): ClassifiedPeer<C>;
  /** Certificates remembered now. */
  readonly size: number;
}

/** Bounds the memory: each entry holds one certificate object (which an open session holds anyway). */
export const defaultClassifiedPeersLimit = 16_384;

/**
 * `classifyPeer` for a TLS listener that sees the same devices reconnect. On Node 20 (OpenSSL 3.0) the first
 * `getPeerX509Certificate()` of a socket costs ~0.15 ms of main-thread CPU (Node copies the chain the peer
 * sent, X509_dup per CA certificate), more than the rest of the classification (subject and SAN parsing,
 * fingerprint, the issuing CA): about twice `getPeerCertificate(false)`, which reads the leaf's fingerprint.
 * So the fingerprint is read first, and a certificate already classified under the same trusted issuers
 * gets its earlier answer and certificate object back (the fingerprint is a SHA-256 of the DER, so the
 * same fingerprint is the same certificate, name, SANs and signature included).
 *
 * What is never remembered:
 * - OpenSSL's verdict (`authorized`): it is per handshake (expiry, the CA list of that moment), so it is read
 *   on every connection before anything is looked up, and a peer OpenSSL refused is classified afresh;
 * - refusals of any kind: rare, and not worth the thought of one outliving its cause;
 * - anything across a change of trust: a new `TrustedIssuers` (core/trust-store.ts makes one per snapshot)
 *   empties the memory before its first answer.
 * Registry admission (revocation, the registry row for the exact certificate) is not part of this: the
 * broker checks it on every CONNECT (broker/session-admission.ts).
 */
export function createPeerClassifier<C extends CertificateView>(limit = defaultClassifiedPeersLimit): PeerClassifier<C> {
  let classifiedUnder: TrustedIssuers | undefined;
  // Insertion order is recency order (a hit is moved to the end); the oldest entry goes first when full.
  const classified = new Map<string, ClassifiedPeer<C>>();

  return {
    classify(peer, issuers) {
      if (issuers !== classifiedUnder) {
        classified.clear();
        classifiedUnder = issuers;
      }
      if (!peer.authorized) return classifyPeer(peer, issuers);
      const fingerprint = peer.getPeerCertificate(false)?.fingerprint256;
      if (fingerprint === undefined || fingerprint === '') return classifyPeer(peer, issuers);
      const remembered = classified.get(fingerprint);
      if (remembered !== undefined) {
        classified.delete(fingerprint);
        classified.set(fingerprint, remembered);
        return remembered;
      }
      const result = classifyPeer(peer, issuers);
      const certificate = result.certificate;
      // The certificate object must be the one fingerprinted (both reads are of the same handshake; checked anyway).
      if (result.credential.kind === 'refused' || certificate === undefined || normaliseFingerprint(certificate.fingerprint256) !== normaliseFingerprint(fingerprint)) return result;
      if (classified.size >= limit) classified.delete(classified.keys().next().value as string);
      classified.set(fingerprint, result);
      return result;
    },
    get size() {
      return classified.size;
    },
  };
}
