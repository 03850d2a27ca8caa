import { randomBytes } from 'node:crypto';
import { type Clock, FleetgateError, generateKeyPair, issueCertificate, privateKeyToPem } from '../core/index.ts';
import type { CertificateAuthorities } from './certificate-authorities.ts';
import type { ClaimRecord, Registry } from '../registry/index.ts';
import { auditRefusals } from './audited.ts';

export interface CreateClaimRequest {
  readonly template: string;
  readonly maxUses?: number | null;
  /** Lifetime of the claim (and of its certificate); default 30 days. */
  readonly expiresInSeconds?: number;
  readonly actor: string;
}

export interface CreatedClaim {
  readonly claim: ClaimRecord;
  readonly certificate: string;
  /** The batch's shared private key: returned once, never stored by the gateway. */
  readonly privateKey: string;
  readonly ca: string;
}

export const defaultClaimLifetimeSeconds = 30 * 24 * 3600;
const maxClaimLifetimeSeconds = 10 * 365 * 24 * 3600;

/**
 * A claim credential for a factory batch: a key pair and a certificate from the claim CA, registered with
 * its limits. The private key is generated here because it is shared by the batch and burned into firmware;
 * it is not a device identity, and the gateway keeps no copy.
 */
export async function createClaim(deps: { registry: Registry; authorities: Pick<CertificateAuthorities, 'issuer' | 'rootsPem'>; clock: Clock }, request: CreateClaimRequest): Promise<CreatedClaim> {
  const { registry, clock } = deps;
  return auditRefusals(registry, { actor: request.actor, action: 'claim.create', detail: { template: request.template } }, async () => {
    const lifetime = request.expiresInSeconds ?? defaultClaimLifetimeSeconds;
    if (!Number.isInteger(lifetime) || lifetime < 60 || lifetime > maxClaimLifetimeSeconds) {
      throw new FleetgateError('REQUEST_INVALID', { message: 'The claim lifetime must be between one minute and ten years.' });
    }
    if (request.maxUses != null && (!Number.isInteger(request.maxUses) || request.maxUses < 1)) {
      throw new FleetgateError('REQUEST_INVALID', { message: 'maxUses must be a positive integer (or absent for unlimited).' });
    }
    if ((await registry.getTemplate(request.template)) === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: request.template } });
    const id = `claim-${randomBytes(6).toString('hex')}`;
    const expiresAt = new Date(clock.now().getTime() + lifetime * 1000);
    const keys = await generateKeyPair();
    // The active claim CA signs; the factory's ca.crt holds every trusted root (both, during a root rotation).
    const claimCa = await deps.authorities.issuer('claim');
    const issued = await issueCertificate({ issuer: claimCa.credential, publicKey: keys.publicKey, profile: { kind: 'claim', claimId: id, notAfter: expiresAt }, clock });
    const claim = await registry.createClaim(
      { id, template: request.template, certificateSerial: issued.serial, issuerCa: claimCa.id, maxUses: request.maxUses ?? null, expiresAt: issued.notAfter },
      { actor: request.actor, action: 'claim.create', result: 'ok', detail: { claimId: id, template: request.template, maxUses: request.maxUses ?? null, serial: issued.serial } },
    );
    return { claim, certificate: issued.pem + claimCa.credential.certificate.toString('pem') + '\n', privateKey: await privateKeyToPem(keys.privateKey), ca: deps.authorities.rootsPem() };
  });
}

export function lifetimeFromText(text: string): number {
  const match = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new FleetgateError('REQUEST_INVALID', { message: `"${text}" is not a duration; use e.g. 90m, 12h or 30d.` });
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? 'd') as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}
