import { type Static, Type } from 'typebox';
import { bearer } from './common.ts';
import { Answer, DateTime, ImmutableArray, Nullable, StringEnum } from './json-schema.ts';

/** The CAs and their rotation (routes in provisioning/api/pki-routes.ts; README "Rotating certificates and CAs"). */

/** `manufacturer`: a CA registered as a claim issuer (birth certificates); it is not rotated here but revoked as a claim. */
export const caRoles = ['root', 'device', 'claim', 'cross', 'manufacturer'] as const;
export const caStates = ['next', 'active', 'retiring', 'retired'] as const;
export const rotatableCaRoles = ['root', 'device', 'claim'] as const;
export const caRotationStages = ['prepare', 'activate', 'retire'] as const;

export const CertificateAuthority = Answer({
  id: Type.String(),
  role: StringEnum(caRoles),
  state: StringEnum(caStates),
  subject: Type.String(),
  /** The CA that signed it; null for a self-signed root. */
  issuerId: Nullable(Type.String()),
  /** For a cross-certificate: the root whose key it carries. */
  crossOf: Nullable(Type.String()),
  fingerprint: Type.String(),
  notBefore: DateTime(),
  notAfter: DateTime(),
  /** What it still vouches for: unexpired active certificates, usable claims, CAs under it not retired. */
  usage: Answer({ certificates: Type.Integer(), claims: Type.Integer(), authorities: Type.Integer() }),
  pem: Type.String(),
});
export type CertificateAuthority = Static<typeof CertificateAuthority>;

export const CertificateAuthorityList = Answer({ items: ImmutableArray(CertificateAuthority) });
export type CertificateAuthorityList = Static<typeof CertificateAuthorityList>;

export const RotateCa = Type.Object({ role: StringEnum(rotatableCaRoles), stage: StringEnum(caRotationStages) }, { additionalProperties: false });
export type RotateCa = Static<typeof RotateCa>;

export const CaRotation = Answer({ role: StringEnum(rotatableCaRoles), stage: StringEnum(caRotationStages), ca: CertificateAuthority, items: ImmutableArray(CertificateAuthority) });
export type CaRotation = Static<typeof CaRotation>;

const pki = { tags: ['pki'] };

export const pkiSchemas = {
  listCas: { ...pki, security: bearer, summary: 'Every CA with its role, rotation state, validity and what it still vouches for', response: { 200: CertificateAuthorityList } },
  rotateCa: {
    ...pki,
    security: bearer,
    summary: 'Run one stage of a CA rotation: prepare a new CA, activate it, or retire the old one (refused while it still vouches for anything)',
    body: RotateCa,
    response: { 200: CaRotation },
  },
  trustBundle: { ...pki, summary: 'Trust bundle (PEM): every trusted root, cross-certificate and issuing CA' },
  crl: { ...pki, summary: 'CRL of a device CA (DER); the active one unless ?ca=<id> names another', querystring: Type.Object({ ca: Type.Optional(Type.String({ maxLength: 64 })) }, { additionalProperties: false }) },
};
