/**
 * Certificate profiles (README "Certificates"). The server chooses every field of an issued certificate;
 * nothing in a CSR but its public key is ever copied.
 */
export const deviceUriPrefix = 'urn:fleetgate:device:';
export const claimUriPrefix = 'urn:fleetgate:claim:';
export const serviceUriPrefix = 'urn:fleetgate:service:';
/**
 * Operator certificates (README "HTTPS API"): signed by the device CA so the API's TLS already verifies the chain,
 * but never a device identity: the broker accepts only device and service URIs (peer-identity.ts).
 */
export const operatorUriPrefix = 'urn:fleetgate:operator:';

/** notBefore is back-dated so devices whose clocks run a little late accept the certificate at once. */
export const backdateMs = 5 * 60 * 1000;
export const dayMs = 24 * 60 * 60 * 1000;

export const defaultDeviceValidityDays = 365;
export const rootValidityDays = 20 * 365;
export const issuingCaValidityDays = 10 * 365;
export const serverValidityDays = 825;
/** Operator certificates (POST /v1/operators/certificates): a person's credential, renewed by re-issuing. */
export const operatorValidityDays = 90;

/** Where relying parties find revocation status; both live on the HTTPS API. */
export interface RevocationUrls {
  readonly crl: string;
  readonly ocsp: string;
}

export type LeafProfile =
  | { readonly kind: 'device'; readonly deviceId: string; readonly validityDays: number; readonly revocation?: RevocationUrls }
  | { readonly kind: 'service'; readonly name: string; readonly validityDays: number; readonly revocation?: RevocationUrls }
  | { readonly kind: 'operator'; readonly name: string; readonly validityDays: number }
  | { readonly kind: 'claim'; readonly claimId: string; readonly notAfter: Date }
  | { readonly kind: 'server'; readonly dnsNames: readonly string[]; readonly ipAddresses: readonly string[] };

export const deviceUri = (id: string) => `${deviceUriPrefix}${id}`;
export const claimUri = (id: string) => `${claimUriPrefix}${id}`;
export const serviceUri = (name: string) => `${serviceUriPrefix}${name}`;
export const operatorUri = (name: string) => `${operatorUriPrefix}${name}`;
