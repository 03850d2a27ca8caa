import { writeFileSync } from 'node:fs';
import {
  activeCa,
  certIdNamesIssuer,
  type Clock,
  createCrl,
  createOcspErrorResponse,
  createOcspResponse,
  type EncodedCrl,
  FleetgateError,
  isFleetgateError,
  isRevocationReason,
  type OcspCertStatus,
  parseOcspRequest,
  type RevocationReason,
  x509,
} from '../core/index.ts';
import type { Registry } from '../registry/index.ts';
import type { CertificateAuthorities } from './certificate-authorities.ts';

export interface RevocationStatus {
  /**
   * The current signed CRL of a device CA (default: the active one): revoked certificates it signed, and the
   * certificates of suspended devices as `certificateHold` (regenerated after every status change, and at
   * least every minute). A retired device CA keeps answering until its last certificate expires.
   */
  crl(caId?: string): Promise<EncodedCrl>;
  /**
   * Called on every revocation, suspension and resume: the CRLs are stale at once (the next GET rebuilds,
   * never serving a build that started before) and the active CA's is rebuilt in the background after a
   * short quiet period, so a burst of revocations costs one signing, not one each.
   */
  invalidate(): void;
  /** Answers a DER OCSPRequest with a DER OCSPResponse, signed by the device CA its CertIDs name; malformed requests get `malformedRequest`. */
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
 * CRL (RFC 5280) and OCSP (RFC 6960) for the device CAs, from the registry. These serve relying parties
 * outside fleetgate (other brokers, backend services); fleetgate's own brokers check the registry at every
 * CONNECT and close live sessions on the event bus, which is faster than any CRL.
 */
export function createRevocationStatus(deps: { registry: Registry; authorities: Pick<CertificateAuthorities, 'list' | 'credential'>; clock: Clock; crlPath?: string }): RevocationStatus {
  const cached = new Map<string, { crl: EncodedCrl; at: number }>();
  // Bumped by invalidate(): a build that read the registry before a status change must not become current.
  let generation = 0;
  const building = new Map<string, { promise: Promise<EncodedCrl>; generation: number }>();
  let debounce: ReturnType<typeof setTimeout> | undefined;
  let lastCrlNumber = 0;

  const reasonOf = (reason: string): RevocationReason => (isRevocationReason(reason) && reason !== 'removeFromCRL' ? reason : 'unspecified');
  const deviceCas = () => deps.authorities.list().filter((ca) => ca.role === 'device');
  const deviceCa = (caId: string | undefined) => {
    const ca = caId === undefined ? activeCa(deviceCas(), 'device') : deviceCas().find((candidate) => candidate.id === caId);
    if (ca === undefined) throw new FleetgateError('PKI_CA_NOT_FOUND', { detail: { caId } });
    return ca;
  };

  const build = async (caId: string, active: boolean, startedAt: number): Promise<EncodedCrl> => {
    const now = deps.clock.now();
    // Rows from before CAs were recorded name no CA: listing a foreign serial is harmless (serials are random).
    const entries = (await deps.registry.listRevokedCertificates(now))
      .filter((entry) => entry.issuerCa === null || entry.issuerCa === caId)
      .map((entry) => ({ serial: entry.serial, revokedAt: entry.revokedAt, reason: reasonOf(entry.reason) }));
    // Seconds since the epoch: increases across restarts without storing a counter (RFC 5280 §5.2.3); two
    // builds within one second (a status change right after a rebuild) still get distinct, rising numbers.
    lastCrlNumber = Math.max(Math.floor(now.getTime() / 1000), lastCrlNumber + 1);
    const issuer = await deps.authorities.credential(caId);
    const crl = await createCrl({ issuer, entries, crlNumber: BigInt(lastCrlNumber), thisUpdate: now, nextUpdate: new Date(now.getTime() + nextUpdateMs) });
    if (startedAt !== generation) return crl; // superseded while signing: answer this caller, keep nothing
    if (deps.crlPath && active) writeFileSync(deps.crlPath, crl.pem, { mode: 0o644 });
    cached.set(caId, { crl, at: now.getTime() });
    return crl;
  };
  // One build per CA and generation; concurrent callers share it, callers after an invalidate() start a fresh one.
  const rebuild = (caId: string, active: boolean): Promise<EncodedCrl> => {
    const running = building.get(caId);
    if (running?.generation === generation) return running.promise;
    const started = { generation, promise: build(caId, active, generation) };
    started.promise = started.promise.finally(() => {
      if (building.get(caId) === started) building.delete(caId);
    });
    building.set(caId, started);
    return started.promise;
  };

  return {
    async crl(caId) {
      const ca = deviceCa(caId);
      const current = cached.get(ca.id);
      if (current !== undefined && deps.clock.now().getTime() - current.at < maxCrlAgeMs) return current.crl;
      return rebuild(ca.id, ca.state === 'active');
    },
    invalidate() {
      cached.clear();
      generation++;
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        const active = deviceCa(undefined);
        void rebuild(active.id, true).catch(() => {});
      }, rebuildDebounceMs);
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
      // The device CA the first CertID names signs the answer (CertIDs naming another CA are answered unknown).
      // Matched on the CA certificates; only the signer's key is loaded (a retired CA's key may be gone).
      let signer = deviceCa(undefined);
      for (const ca of deviceCas()) {
        if (parsed.certIds[0] !== undefined && (await certIdNamesIssuer(new x509.X509Certificate(ca.pem), parsed.certIds[0]))) signer = ca;
      }
      const response = await createOcspResponse({
        issuer: await deps.authorities.credential(signer.id),
        requests: parsed.certIds,
        thisUpdate: now,
        nextUpdate: new Date(now.getTime() + nextUpdateMs),
        ...(parsed.nonce ? { nonce: parsed.nonce } : {}),
        lookup: async (serial): Promise<OcspCertStatus> => {
          const certificate = await deps.registry.getCertificate(serial);
          if (certificate === undefined || (certificate.issuerCa !== null && certificate.issuerCa !== signer.id)) return { status: 'unknown' };
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
