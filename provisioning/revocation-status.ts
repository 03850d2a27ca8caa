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
  /**
   * The current signed CRL of the device CA: revoked certificates, and the certificates of suspended devices
   * as `certificateHold` (regenerated after every status change, and at least every minute).
   */
  crl(): Promise<EncodedCrl>;
  /**
   * Called on every revocation, suspension and resume: the CRL is stale at once (the next GET rebuilds it,
   * never serving a build that started before) and is rebuilt in the background after a short quiet
   * period, so a burst of revocations costs one signing, not one each.
   */
  invalidate(): void;
  /** Answers a DER OCSPRequest with a DER OCSPResponse; malformed requests get `malformedRequest`. */
  ocsp(request: Uint8Array): Promise<{ response: Uint8Array; refusal?: 'OCSP_REQUEST_MALFORMED' }>;
}

/** A CRL older than this is rebuilt on the next request: superseded certificates reach it that fast. */
const maxCrlAgeMs = 60_000;
/** Quiet period before the background rebuild after a revocation (keeps pki/crl.pem current). */
const rebuildDebounceMs = 1_000;
/**
 * Relying parties may cache a CRL or OCSP answer until nextUpdate, so this bounds how long a revocation takes
 * to reach them: half an hour, plus at most maxCrlAgeMs when a revocation event was lost, stays well inside
 * the hour README "Revocation, audit and metrics" promises. Brokers rely on neither: they read the registry.
 */
const nextUpdateMs = 30 * 60_000;

/**
 * CRL (RFC 5280) and OCSP (RFC 6960) for the device CA, from the registry. These serve relying parties
 * outside fleetgate (other brokers, backend services); fleetgate's own brokers check the registry at every
 * CONNECT and close live sessions on the event bus, which is faster than any CRL.
 */
export function createRevocationStatus(deps: { registry: Registry; deviceCa: CaCredential; clock: Clock; crlPath?: string }): RevocationStatus {
  let current: { crl: EncodedCrl; at: number } | undefined;
  // Bumped by invalidate(): a build that read the registry before a status change must not become current.
  let generation = 0;
  let building: { promise: Promise<EncodedCrl>; generation: number } | undefined;
  let debounce: ReturnType<typeof setTimeout> | undefined;
  let lastCrlNumber = 0;

  const reasonOf = (reason: string): RevocationReason => (isRevocationReason(reason) && reason !== 'removeFromCRL' ? reason : 'unspecified');

  const build = async (startedAt: number): Promise<EncodedCrl> => {
    const now = deps.clock.now();
    const entries = (await deps.registry.listRevokedCertificates(now)).map((entry) => ({ serial: entry.serial, revokedAt: entry.revokedAt, reason: reasonOf(entry.reason) }));
    // Seconds since the epoch: increases across restarts without storing a counter (RFC 5280 §5.2.3); two
    // builds within one second (a status change right after a rebuild) still get distinct, rising numbers.
    lastCrlNumber = Math.max(Math.floor(now.getTime() / 1000), lastCrlNumber + 1);
    const crl = await createCrl({ issuer: deps.deviceCa, entries, crlNumber: BigInt(lastCrlNumber), thisUpdate: now, nextUpdate: new Date(now.getTime() + nextUpdateMs) });
    if (startedAt !== generation) return crl; // superseded while signing: answer this caller, keep nothing
    if (deps.crlPath) writeFileSync(deps.crlPath, crl.pem, { mode: 0o644 });
    current = { crl, at: now.getTime() };
    return crl;
  };
  // One build per generation; concurrent callers share it, callers after an invalidate() start a fresh one.
  const rebuild = (): Promise<EncodedCrl> => {
    if (building?.generation === generation) return building.promise;
    const started = { generation, promise: build(generation) };
    started.promise = started.promise.finally(() => {
      if (building === started) building = undefined;
    });
    building = started;
    return started.promise;
  };

  return {
    async crl() {
      if (current !== undefined && deps.clock.now().getTime() - current.at < maxCrlAgeMs) return current.crl;
      return rebuild();
    },
    invalidate() {
      current = undefined;
      generation++;
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
          if (certificate.status !== 'active') {
            return { status: 'revoked', revokedAt: certificate.revokedAt ?? now, reason: reasonOf(certificate.revocationReason ?? 'unspecified') };
          }
          // RFC 6960 §2.2 / RFC 5280 §5.3.1: a suspension is a hold, reversible, unlike a revocation; the
          // same certificate answers good again once the device is resumed. Dated at the suspension.
          const device = await deps.registry.getDevice(certificate.deviceId);
          if (device?.status === 'suspended') return { status: 'revoked', revokedAt: device.updatedAt, reason: 'certificateHold' };
          return { status: 'good' };
        },
      });
      return { response };
    },
  };
}
