import {
  assertAttributes,
  assertDeviceId,
  assertEnrollment,
  type CertificateReply,
  type CertificateRequestHandler,
  checkCsr,
  claimRefusal,
  decideRenewalAfterExpiry,
  FleetgateError,
  type GatewayMetrics,
  isFleetgateError,
  isValidDeviceId,
  noMetrics,
  readCertificateRequest,
  type RenewInput,
} from '../core/index.ts';
import type { CertificateRecord, DeviceRecord } from '../registry/index.ts';
import { auditRefusals } from './audited.ts';
import { type IssuingDeps, issueForTemplate, toNewCertificate } from './issue-for-template.ts';
import type { RateLimiter } from './rate-limiter.ts';
import type { CertificateAuthorities } from './certificate-authorities.ts';

export interface CertificateServiceDeps extends IssuingDeps {
  readonly metrics?: GatewayMetrics;
  /** The chain sent with each certificate: its issuing CA, then that CA's root. */
  readonly authorities: IssuingDeps['authorities'] & Pick<CertificateAuthorities, 'chainFor'>;
  /** Enrollments per claim. */
  readonly claimRateLimiter: RateLimiter;
}

export type CertificateService = CertificateRequestHandler;

/**
 * Claim-certificate bootstrap enrollment and renewal, one use-case for every transport. Checks run in a
 * fixed order and cheap ones first; signing happens before the single registry transaction that re-checks
 * everything racy (claim uses, allow-list, clones, key binding) and records the result, so a refusal at any
 * point leaves nothing behind but its audit entry.
 */
export function createCertificateService(deps: CertificateServiceDeps): CertificateService {
  const { registry, clock } = deps;

  const reply = (record: CertificateRecord): CertificateReply => ({
    deviceId: record.deviceId,
    serial: record.serial,
    certificate: record.pem,
    chain: deps.authorities.chainFor(record.issuerCa),
    notAfter: record.notAfter.toISOString(),
    serverTime: clock.now().toISOString(),
  });

  const metrics = deps.metrics ?? noMetrics;
  /** Counts every outcome by transport and code. */
  const counted = async (operation: 'enroll' | 'renew', transport: string, work: () => Promise<CertificateReply>) => {
    try {
      const reply = await work();
      metrics.enrollment(operation, transport, 'ok');
      return reply;
    } catch (error) {
      metrics.enrollment(operation, transport, 'refused', isFleetgateError(error) ? error.code : 'INTERNAL');
      throw error;
    }
  };

  /**
   * The renewal of an expired certificate whose row, device and status the caller checked: the rule is
   * core decideRenewalAfterExpiry (template grace, once only, a repeat answered with what was issued), and
   * the registry checks "once" again in its write transaction. Every outcome is audited with how long the
   * certificate had been expired.
   */
  const renewAfterExpiry = async (input: RenewInput, context: { actor: string; action: string; detail: Record<string, unknown> }, device: DeviceRecord, current: CertificateRecord, now: Date): Promise<CertificateReply> => {
    const csr = await checkCsr(readCertificateRequest(input.body, input.transport).csr);
    const template = await registry.getTemplate(device.template);
    const later = (await registry.listCertificates(device.id)).filter((c) => c.serial !== current.serial && (c.replaces === current.serial || c.notBefore.getTime() > current.notBefore.getTime()));
    const decision = decideRenewalAfterExpiry({
      notAfter: current.notAfter,
      now,
      renewAfterExpiryDays: template?.renewAfterExpiryDays ?? 0,
      later,
      expiredSerial: current.serial,
      publicKeyHash: csr.publicKeyHash,
    });
    const expiry = { expiredForDays: decision.expiredForDays, notAfter: current.notAfter.toISOString() };
    if (decision.outcome === 'refused') throw new FleetgateError(decision.code, { detail: { ...expiry, reason: decision.reason } });
    if (decision.outcome === 'repeat') {
      const issuedThen = later.find((c) => c.serial === decision.serial);
      if (issuedThen === undefined) throw new FleetgateError('INTERNAL', { detail: { reason: 'repeated renewal not found', serial: decision.serial } });
      await registry.appendAudit({ ...context, result: 'ok', deviceId: device.id, detail: { ...context.detail, ...expiry, certificateSerial: issuedThen.serial, repeated: true } });
      return reply(issuedThen);
    }
    if (template === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: device.template } });
    const { issued } = await issueForTemplate(deps, { id: device.id, kind: device.kind, template, csr });
    const record = await registry
      .registerCertificate({
        device: { id: device.id, kind: device.kind, template: device.template },
        certificate: toNewCertificate(issued, current.serial),
        mustBeNew: false,
        onlySuccessor: true,
        audit: { ...context, result: 'ok', deviceId: device.id, detail: { ...context.detail, ...expiry, certificateSerial: issued.serial, keyType: csr.keyType, sameKey: csr.publicKeyHash === current.publicKeyHash } },
      })
      .catch((error: unknown) => {
        // A racing request renewed it first (or any other refusal of the registry): audited with the expiry too.
        if (isFleetgateError(error)) throw new FleetgateError(error.code, { message: error.message, detail: { ...error.detail, ...expiry }, cause: error });
        throw error;
      });
    return reply(record);
  };

  const service: CertificateService = {
    async enroll(input) {
      const context = {
        actor: `claim:${input.boundSerial ?? input.claimKey}`,
        action: 'device.enroll',
        ...(isValidDeviceId(input.serial) ? { deviceId: input.serial } : {}),
        detail: { transport: input.transport, serial: input.serial?.slice(0, 128) },
      };
      return auditRefusals(registry, context, async () => {
        const claim = await registry.getClaimByCertificateSerial(input.claimKey);
        if (claim === undefined) throw new FleetgateError('ENROLL_CLAIM_UNKNOWN');
        const unusable = claimRefusal(claim, clock.now());
        if (unusable !== undefined) throw new FleetgateError(unusable.code, { detail: { claimId: claim.id, reason: unusable.reason } });
        if (!deps.claimRateLimiter.tryTake(claim.id)) throw new FleetgateError('ENROLL_RATE_LIMITED', { detail: { claimId: claim.id } });

        const request = readCertificateRequest(input.body, input.transport);
        const csr = await checkCsr(request.csr);
        const id = assertDeviceId(input.serial ?? request.serial ?? csr.requestedCommonName);
        if ((input.boundSerial !== undefined && id !== input.boundSerial) || (request.serial !== undefined && request.serial !== id)) {
          throw new FleetgateError('ENROLL_SERIAL_MISMATCH', { detail: { serial: id, requested: request.serial, bound: input.boundSerial } });
        }
        // What the device says about itself is kept, but never as the attributes a policy reads (README
        // "Enrollment and renewal"): those come from the allow-list row, which the registry applies.
        const reportedAttributes = assertAttributes(request.attributes);
        const template = await registry.getTemplate(claim.template);
        if (template === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: claim.template } });

        // Decided before signing, on the registry as it is now; enrollWithClaim decides again, by the same
        // rule, inside its transaction, where racing requests are serialised.
        const existing = await registry.getDevice(id);
        const same = existing === undefined ? undefined : (await registry.findCertificatesByPublicKey(csr.publicKeyHash)).find((c) => c.deviceId === id && c.status === 'active');
        const decision = assertEnrollment(
          {
            claim,
            template,
            serialAllowed: !template.requireAllowlist || (await registry.isSerialAllowed(template.name, id)),
            existing,
            holdsSameKey: same !== undefined,
            now: clock.now(),
          },
          { claimId: claim.id, id, template: template.name },
        );
        // A device that lost the reply asks again with the same key: answer with what it already has.
        if (decision.outcome === 'repeat' && same !== undefined) {
          await registry.appendAudit({ ...context, result: 'ok', deviceId: id, detail: { ...context.detail, serial: same.serial, repeated: true } });
          return reply(same);
        }

        const { issued } = await issueForTemplate(deps, { id, kind: 'device', template, csr });
        const { certificate } = await registry.enrollWithClaim({
          claimId: claim.id,
          device: { id, kind: 'device', template: template.name, reportedAttributes },
          certificate: toNewCertificate(issued),
          requireAllowlist: template.requireAllowlist,
          allowReenroll: template.allowReenroll,
          audit: {
            ...context,
            result: 'ok',
            deviceId: id,
            detail: { ...context.detail, claimId: claim.id, certificateSerial: issued.serial, keyType: csr.keyType, ignoredExtensions: csr.ignoredExtensions },
          },
        });
        return reply(certificate);
      });
    },

    async renew(input) {
      const context = {
        actor: `device:${input.deviceId}`,
        action: 'device.renew',
        detail: { transport: input.transport, currentSerial: input.certificateSerial, ...(input.afterExpiry === true ? { afterExpiry: true } : {}) },
      };
      return auditRefusals(registry, { ...context, deviceId: input.deviceId }, async () => {
        const admission = await registry.getAdmission(input.certificateSerial);
        // The registry row for this exact certificate: same serial, same holder, same SHA-256 fingerprint.
        if (admission === undefined || admission.device.id !== input.deviceId || admission.certificate.fingerprint !== input.certificateFingerprint) {
          throw new FleetgateError('AUTH_CERT_UNKNOWN');
        }
        const { device, certificate: current } = admission;
        if (device.status === 'suspended') throw new FleetgateError('AUTH_DEVICE_SUSPENDED');
        if (device.status === 'revoked') throw new FleetgateError('AUTH_DEVICE_REVOKED');
        if (current.status !== 'active') throw new FleetgateError('AUTH_CERT_REVOKED', { detail: { status: current.status } });
        if (admission.issuerRetired) throw new FleetgateError('AUTH_CERT_UNTRUSTED', { detail: { reason: 'the CA that signed the certificate is retired' } });

        const now = clock.now();
        if (current.notAfter.getTime() < now.getTime()) {
          // Only the two HTTPS routes accept an expired certificate (README "Renewal after expiry"); an MQTT
          // session that outlived its certificate, or a relayed request, is refused like a new connection.
          if (input.afterExpiry !== true) throw new FleetgateError('AUTH_CERT_EXPIRED', { detail: { notAfter: current.notAfter.toISOString() } });
          return renewAfterExpiry(input, context, device, current, now);
        }

        const csr = await checkCsr(readCertificateRequest(input.body, input.transport).csr);
        // Idempotent: a renewal already issued for this key and this current certificate is sent again.
        const pending = (await registry.listCertificates(device.id)).find((c) => c.replaces === current.serial && c.publicKeyHash === csr.publicKeyHash && c.status === 'active');
        if (pending !== undefined) return reply(pending);

        const template = await registry.getTemplate(device.template);
        if (template === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: device.template } });
        const { issued } = await issueForTemplate(deps, { id: device.id, kind: device.kind, template, csr });
        const record = await registry.registerCertificate({
          device: { id: device.id, kind: device.kind, template: device.template },
          certificate: toNewCertificate(issued, current.serial),
          mustBeNew: false,
          audit: { ...context, result: 'ok', deviceId: device.id, detail: { ...context.detail, certificateSerial: issued.serial, keyType: csr.keyType, sameKey: csr.publicKeyHash === current.publicKeyHash } },
        });
        return reply(record);
      });
    },
  };
  return {
    enroll: (input) => counted('enroll', input.transport, () => service.enroll(input)),
    renew: (input) => counted('renew', input.transport, () => service.renew(input)),
  };
}
