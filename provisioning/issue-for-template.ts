import { type CheckedCsr, checkCsr, type Clock, FleetgateError, type IssuedCertificate, issueCertificate, type RevocationUrls } from '../core/index.ts';
import type { IdentityKind, NewCertificate, Registry, TemplateRecord } from '../registry/index.ts';
import type { CertificateAuthorities } from './certificate-authorities.ts';

export interface IssuingDeps {
  readonly registry: Registry;
  /** The active device CA signs (README "Rotating certificates and CAs"). */
  readonly authorities: Pick<CertificateAuthorities, 'issuer'>;
  readonly clock: Clock;
  readonly revocation?: RevocationUrls;
}

/**
 * The one place a device or service certificate is signed: the CSR is checked (parse, proof of possession,
 * key type allowed globally and by the template) and the profile is the template's. Signing writes
 * nothing; the caller records the result in the registry, atomically with its other checks.
 */
export async function issueForTemplate(
  deps: IssuingDeps,
  request: { id: string; kind: IdentityKind; template: TemplateRecord; csr: string | CheckedCsr },
): Promise<{ issued: IssuedCertificate & { readonly issuerCa: string }; csr: CheckedCsr }> {
  const { template } = request;
  const csr = typeof request.csr === 'string' ? await checkCsr(request.csr) : request.csr;
  if (!template.keyTypes.includes(csr.keyType)) {
    throw new FleetgateError('PKI_KEY_TYPE_NOT_ALLOWED', { detail: { keyType: csr.keyType, template: template.name, allowed: template.keyTypes } });
  }
  const issuer = await deps.authorities.issuer('device');
  // The CRL of the CA that signs it: after a rotation the active CA's CRL does not list this certificate.
  const revocation = deps.revocation ? { revocation: { ...deps.revocation, crl: `${deps.revocation.crl}?ca=${issuer.id}` } } : {};
  const issued = await issueCertificate({
    issuer: issuer.credential,
    publicKey: csr.publicKey,
    profile:
      request.kind === 'service'
        ? { kind: 'service', name: request.id, validityDays: template.validityDays, ...revocation }
        : { kind: 'device', deviceId: request.id, validityDays: template.validityDays, ...revocation },
    clock: deps.clock,
  });
  return { issued: { ...issued, issuerCa: issuer.id }, csr };
}

export function toNewCertificate(issued: IssuedCertificate & { readonly issuerCa: string }, replaces?: string): NewCertificate {
  return {
    issuerCa: issued.issuerCa,
    serial: issued.serial,
    fingerprint: issued.fingerprint,
    publicKeyHash: issued.publicKeyHash,
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
    pem: issued.pem,
    ...(replaces === undefined ? {} : { replaces }),
  };
}
