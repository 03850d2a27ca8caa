import { writeFileSync } from 'node:fs';
import {
  type CaCredential,
  type Clock,
  createCrl,
  createOcspErrorResponse,
  createOcspResponse,
  type EncodedCrl,
  isFleetgateError,
  isRevocationReason,
  type OcspCertStatus,
  parseOcspRequest,
  type RevocationReason,
} from '../core/index.ts';
import type { Registry } from '../registry/index.ts';

export interface RevocationStatus {
  /** The current signed CRL of the device CA (regenerated after a revocation, and at least every minute). */
  crl(): Promise<EncodedCrl>;
  /**
   * Called on every revocation: the CRL is stale at once (the next GET rebuilds it) and is rebuilt in the
   * background after a short quiet period, so a burst of revocations costs one signing, not one each.
   */
  invalidate(): void;
  /** Answers a DER OCSPRequest with a DER OCSPResponse; malformed requests get `malformedRequest`. */
  ocsp(request: Uint8Array): Promise<{ response: Uint8Array; refusal?: 'OCSP_REQUEST_MALFORMED' }>;
}

/** A CRL older than this is rebuilt on the next request: superseded certificates reach it that fast. */
const maxCrlAgeMs = 60_000;
/** Quiet period before the background rebuild after a revocation (keeps pki/crl.pem current). */
const rebuildDebounceMs = 1_000;
/** Relying parties may cache a CRL or OCSP answer until nextUpdate; brokers never rely on either. */
const nextUpdateMs = 24 * 3600_000;

/**
 * CRL (RFC 5280) and OCSP (RFC 6960) for the device CA, from the registry. These serve relying parties
 * outside fleetgate (other brokers, backend services); fleetgate's own brokers check the registry at every
 * CONNECT and close live sessions on the event bus, which is faster than any CRL.
 */
export function createRevocationStatus(deps: { registry: Registry; deviceCa: CaCredential; clock: Clock; crlPath?: string }): RevocationStatus {
  let current: { crl: EncodedCrl; at: number } | undefined;
  let building: Promise<EncodedCrl> | undefined;
  let debounce: ReturnType<typeof setTimeout> | undefined;

  const reasonOf = (reason: string): RevocationReason => (isRevocationReason(reason) && reason !== 'removeFromCRL' ? reason : 'unspecified');

  const build = async (): Promise<EncodedCrl> => {
    const now = deps.clock.now();
    const entries = (await deps.registry.listRevokedCertificates(now)).map((entry) => ({ serial: entry.serial, revokedAt: entry.revokedAt, reason: reasonOf(entry.reason) }));
    // Seconds since the epoch: increases across restarts without storing a counter (RFC 5280 §5.2.3).
    const crl = await createCrl({ issuer: deps.deviceCa, entries, crlNumber: BigInt(Math.floor(now.getTime() / 1000)), thisUpdate: now, nextUpdate: new Date(now.getTime() + nextUpdateMs) });
    if (deps.crlPath) writeFileSync(deps.crlPath, crl.pem, { mode: 0o644 });
    current = { crl, at: now.getTime() };
    return crl;
  };
  // One build at a time; concurrent callers share it.
  const rebuild = () => (building ??= build().finally(() => (building = undefined)));

  return {
    async crl() {
      if (current !== undefined && deps.clock.now().getTime() - current.at < maxCrlAgeMs) return current.crl;
      return rebuild();
    },
    invalidate() {
      current = undefined;
      clearTimeout(debounce);
      debounce = setTimeout(() => void rebuild().catch(() => {}), rebuildDebounceMs);
      debounce.unref();
    },
    async ocsp(request) {
      let parsed;
      try {
        parsed = parseOcspRequest(request);
      } catch (error) {
        if (isFleetgateError(error)) return { response: createOcspErrorResponse('malformedRequest'), refusal: 'OCSP_REQUEST_MALFORMED' };
        throw error;
      }
      const now = deps.clock.now();
      const response = await createOcspResponse({
        issuer: deps.deviceCa,
        requests: parsed.certIds,
        thisUpdate: now,
        nextUpdate: new Date(now.getTime() + nextUpdateMs),
        ...(parsed.nonce ? { nonce: parsed.nonce } : {}),
        lookup: async (serial): Promise<OcspCertStatus> => {
          const certificate = await deps.registry.getCertificate(serial);
          if (certificate === undefined) return { status: 'unknown' };
          if (certificate.status === 'active') return { status: 'good' };
          return { status: 'revoked', revokedAt: certificate.revokedAt ?? now, reason: reasonOf(certificate.revocationReason ?? 'unspecified') };
        },
      });
      return { response };
    },
  };
}
