import {
  assertAttributes,
  assertDeviceId,
  type CaCredential,
  checkCsr,
  type Clock,
  FleetgateError,
  issueCertificate,
  type RevocationUrls,
} from '../core/index.ts';
import type { CertificateRecord, IdentityKind, Registry } from '../registry/index.ts';
import { auditRefusals } from './audited.ts';

export interface IssuingDeps {
  readonly registry: Registry;
  readonly deviceCa: CaCredential;
  readonly clock: Clock;
  readonly revocation?: RevocationUrls;
}

export interface RegisterDeviceRequest {
  readonly id: string;
  readonly csr: string;
  readonly template?: string;
  readonly kind?: IdentityKind;
  readonly policy?: string;
  readonly attributes?: unknown;
  /** Who asks: `cli`, `operator:<name>`, … */
  readonly actor: string;
}

/**
 * Manual registration (`fleetgate device create`, and service identities): a new device id, a CSR whose key
 * the caller holds, and the template that decides validity, key rules and policy. Checks run in a fixed
 * order (id, template, CSR, key rules), then issuing and recording happen together: the certificate is only
 * handed out once the registry holds it.
 */
export async function registerDevice(deps: IssuingDeps, request: RegisterDeviceRequest): Promise<CertificateRecord> {
  const { registry } = deps;
  const templateName = request.template ?? 'default';
  const kind = request.kind ?? 'device';
  return auditRefusals(registry, { actor: request.actor, action: `${kind}.register`, detail: { id: String(request.id).slice(0, 128), template: templateName } }, async () => {
    const id = assertDeviceId(request.id);
    const attributes = assertAttributes(request.attributes);
    const template = await registry.getTemplate(templateName);
    if (template === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: templateName } });
    if (request.policy !== undefined && (await registry.getPolicy(request.policy)) === undefined) {
      throw new FleetgateError('POLICY_NOT_FOUND', { detail: { policy: request.policy } });
    }
    if ((await registry.getDevice(id)) !== undefined) throw new FleetgateError('DEVICE_EXISTS', { detail: { id } });
    const csr = await checkCsr(request.csr);
    if (!template.keyTypes.includes(csr.keyType)) throw new FleetgateError('PKI_KEY_TYPE_NOT_ALLOWED', { detail: { keyType: csr.keyType, template: template.name } });

    const issued = await issueCertificate({
      issuer: deps.deviceCa,
      publicKey: csr.publicKey,
      profile: kind === 'service'
        ? { kind: 'service', name: id, validityDays: template.validityDays, ...(deps.revocation ? { revocation: deps.revocation } : {}) }
        : { kind: 'device', deviceId: id, validityDays: template.validityDays, ...(deps.revocation ? { revocation: deps.revocation } : {}) },
      clock: deps.clock,
    });
    return registry.registerCertificate({
      device: { id, kind, template: template.name, policy: request.policy ?? null, attributes },
      certificate: { serial: issued.serial, fingerprint: issued.fingerprint, publicKeyHash: issued.publicKeyHash, notBefore: issued.notBefore, notAfter: issued.notAfter, pem: issued.pem },
      mustBeNew: true,
      audit: {
        actor: request.actor,
        action: `${kind}.register`,
        result: 'ok',
        deviceId: id,
        detail: { serial: issued.serial, template: template.name, keyType: csr.keyType, ignoredExtensions: csr.ignoredExtensions },
      },
    });
  });
}
