import { assertAttributes, assertDeviceId, FleetgateError } from '../core/index.ts';
import type { CertificateRecord, IdentityKind } from '../registry/index.ts';
import { auditRefusals } from './audited.ts';
import { type IssuingDeps, issueForTemplate, toNewCertificate } from './issue-for-template.ts';

export type { IssuingDeps } from './issue-for-template.ts';

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
 * Manual registration (`fleetgate device create`, and service identities): a new id, a CSR whose key the
 * caller holds, and the template that decides validity, key rules and policy. Checks run in a fixed order
 * (id, template, policy, CSR, key rules); the certificate is handed out only once the registry holds it.
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
    const { issued, csr } = await issueForTemplate(deps, { id, kind, template, csr: request.csr });
    return registry.registerCertificate({
      device: { id, kind, template: template.name, policy: request.policy ?? null, attributes },
      certificate: toNewCertificate(issued),
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
