import { FleetgateError } from '../errors.ts';
import { pemBlocks, toPem } from './encoding.ts';

/** fleetgate's own keys (CAs, server, keys made for lab devices) are ECDSA P-256. */
export const ecdsaP256: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
export const ecdsaSha256: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return globalThis.crypto.subtle.generateKey(ecdsaP256, true, ['sign', 'verify']);
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  return toPem('PRIVATE KEY', await globalThis.crypto.subtle.exportKey('pkcs8', key));
}

/** Imports a PKCS#8 P-256 private key as written by `privateKeyToPem`. */
export async function privateKeyFromPem(pem: string): Promise<CryptoKey> {
  let der: Uint8Array<ArrayBuffer> | undefined;
  try {
    [der] = pemBlocks(pem, ['PRIVATE KEY']);
  } catch (cause) {
    throw new FleetgateError('PKI_PEM_MALFORMED', { detail: { expected: 'PRIVATE KEY' }, cause });
  }
  if (der === undefined) throw new FleetgateError('PKI_PEM_MALFORMED', { detail: { expected: 'PRIVATE KEY' } });
  try {
    return await globalThis.crypto.subtle.importKey('pkcs8', der, ecdsaP256, true, ['sign']);
  } catch (cause) {
    throw new FleetgateError('PKI_PEM_MALFORMED', { detail: { expected: 'PKCS#8 ECDSA P-256 key' }, cause });
  }
}
