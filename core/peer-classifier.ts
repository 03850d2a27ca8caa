import { type CertificateView, classifyPeer, normaliseFingerprint, type PeerCredential, type TlsPeer, type TrustedIssuers } from './peer-identity.ts';

/**
 * What Node's `TLSSocket.getPeerCertificate(false)` gives that this needs: the SHA-256 fingerprint and the
 * DER of the leaf (`{}` without a certificate, null on a closed socket).
 */
export interface PeerCertificateSummary {
  readonly fingerprint256?: string;
  readonly raw?: Uint8Array;
}

/** A TLS peer that can also name its certificate cheaply (a Node TLSSocket can). */
export interface SummarisedTlsPeer<C extends CertificateView> extends TlsPeer<C> {
  getPeerCertificate(detailed: false): PeerCertificateSummary | null;
}

export interface ClassifiedPeer<C extends CertificateView> {
  readonly credential: PeerCredential;
  /** The peer's certificate; for a peer recognised from memory it is parsed from its DER when first read. */
  readonly certificate: C | undefined;
}

export interface PeerClassifier<C extends CertificateView> {
  /** `classifyPeer` (core/peer-identity.ts), answered from memory for a certificate already classified under the same issuers. */
  classify(peer: SummarisedTlsPeer<C>, issuers: TrustedIssuers): ClassifiedPeer<C>;
  /** Certificates remembered now. */
  readonly size: number;
}

export interface PeerClassifierOptions<C extends CertificateView> {
  /** Parses a DER certificate (Node: `(der) => new X509Certificate(der)`), for a remembered peer's certificate when it is read. */
  readonly parse: (der: Uint8Array) => C;
  /** Most certificates remembered; the least recently seen goes first. */
  readonly limit?: number;
}

/** An entry is one credential (a few short strings): 16,384 of them are a few MB. */
export const defaultClassifiedPeersLimit = 16_384;

/**
 * `classifyPeer` for a TLS listener that sees the same devices reconnect. On Node 20 (OpenSSL 3.0) the
 * first `getPeerX509Certificate()` of a socket costs ~0.15 ms of main-thread CPU (Node copies the chain the
 * peer sent, X509_dup per CA certificate, and keeps the copy: 10-20 KiB per object), more than the rest of
 * the classification (subject and SAN parsing, fingerprint, the issuing CA), and about twice
 * `getPeerCertificate(false)`, which gives the leaf's fingerprint and DER. So the fingerprint is read first,
 * and a certificate already classified under the same trusted issuers gets its earlier credential back
 * (the fingerprint is a SHA-256 of the DER: the same fingerprint is the same certificate, names, SANs and
 * signature included). Its certificate object is parsed from the DER only if someone reads it (a relayed
 * enrollment or renewal: broker/session-hooks.ts).
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
export function createPeerClassifier<C extends CertificateView>(options: PeerClassifierOptions<C>): PeerClassifier<C> {
  const limit = options.limit ?? defaultClassifiedPeersLimit;
  let classifiedUnder: TrustedIssuers | undefined;
  // Insertion order is recency order (a hit is moved to the end); the oldest entry goes first when full.
  const classified = new Map<string, PeerCredential>();

  return {
    classify(peer, issuers) {
      if (issuers !== classifiedUnder) {
        classified.clear();
        classifiedUnder = issuers;
      }
      if (!peer.authorized) return classifyPeer(peer, issuers);
      const summary = peer.getPeerCertificate(false);
      const fingerprint = summary?.fingerprint256;
      const der = summary?.raw;
      if (fingerprint === undefined || fingerprint === '' || der === undefined) return classifyPeer(peer, issuers);
      const remembered = classified.get(fingerprint);
      if (remembered !== undefined) {
        classified.delete(fingerprint);
        classified.set(fingerprint, remembered);
        let certificate: C | undefined;
        return {
          credential: remembered,
          get certificate() {
            certificate ??= options.parse(der);
            return certificate;
          },
        };
      }
      const result = classifyPeer(peer, issuers);
      // The certificate classified must be the one fingerprinted (both reads are of the same handshake; checked anyway).
      if (result.credential.kind === 'refused' || result.certificate === undefined || normaliseFingerprint(result.certificate.fingerprint256) !== normaliseFingerprint(fingerprint)) return result;
      if (classified.size >= limit) classified.delete(classified.keys().next().value as string);
      classified.set(fingerprint, result.credential);
      return result;
    },
    get size() {
      return classified.size;
    },
  };
}
