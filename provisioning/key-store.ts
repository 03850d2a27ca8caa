import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type CaCredential, type CaKeyPair, FleetgateError, generateKeyPair, privateKeyFromPem, privateKeyToPem, x509 } from '../core/index.ts';
import { writeSecret } from './pki-store.ts';

/** A CA's private key, ready to sign: in this process's memory (file keys) or in a token (`crypto` signs). */
export type CaKey = Pick<CaCredential, 'privateKey' | 'crypto'>;

/** A key pair a store just made; `save` gives it its name (file name without `.key`, or token label) and returns the key_ref to record. */
export interface NewCaKey extends CaKeyPair {
  save(name: string): Promise<string>;
}

/**
 * Where CA private keys live (README "CA keys in an HSM"). A registry row's key_ref names the key: a file name
 * in `pki/` for the file store (the default), a PKCS#11 URI (RFC 7512) for a token. Only provisioning opens
 * a key store; brokers never need one.
 */
export interface KeyStore {
  readonly kind: 'file' | 'pkcs11';
  /** Makes a new ECDSA P-256 key pair (inside the token for PKCS#11, never extractable there). */
  generate(): Promise<NewCaKey>;
  load(keyRef: string): Promise<CaKey>;
  has(keyRef: string): Promise<boolean>;
}

/** The key stores of an installation: the file store in `pki/` and any token a key_ref names. */
export interface KeyStores {
  /** The store that holds `keyRef`. */
  forRef(keyRef: string): Promise<KeyStore>;
  /** The key `keyRef` names, from its store (a rotation makes new keys in `forRef` of the role's current key). */
  load(keyRef: string): Promise<CaKey>;
  close(): Promise<void>;
}

export const isPkcs11Uri = (ref: string): boolean => ref.startsWith('pkcs11:');

/** The current layout: `pki/<keyRef>`, PKCS#8 PEM, 0600, created with O_EXCL and never overwritten. */
export function fileKeyStore(pkiDir: string): KeyStore {
  const pathOf = (keyRef: string): string => {
    // key_ref is a plain file name in pki/, never a path.
    if (basename(keyRef) !== keyRef || keyRef.startsWith('.')) throw new FleetgateError('PKI_CA_MISSING', { detail: { key: keyRef, reason: 'not a file name' } });
    return join(pkiDir, keyRef);
  };
  return {
    kind: 'file',
    async generate() {
      const keys = await generateKeyPair();
      return {
        publicKey: await x509.PublicKey.create(keys.publicKey),
        privateKey: keys.privateKey,
        async save(name) {
          const keyRef = `${name}.key`;
          writeSecret(pathOf(keyRef), await privateKeyToPem(keys.privateKey));
          return keyRef;
        },
      };
    },
    async load(keyRef) {
      const path = pathOf(keyRef);
      if (!existsSync(path)) throw new FleetgateError('PKI_CA_MISSING', { detail: { key: keyRef } });
      return { privateKey: await privateKeyFromPem(readFileSync(path, 'utf8')) };
    },
    has: async (keyRef) => existsSync(pathOf(keyRef)),
  };
}

/** One process's key stores: the file store, and PKCS#11 tokens opened on first use (provisioning/pkcs11-key-store.ts). */
export function openKeyStores(pkiDir: string): KeyStores {
  const files = fileKeyStore(pkiDir);
  const tokens = new Map<string, Promise<KeyStore & { close(): Promise<void> }>>();
  const forRef = async (keyRef: string): Promise<KeyStore> => {
    if (!isPkcs11Uri(keyRef)) return files;
    // Loaded on first use only: a process without token keys never loads the PKCS#11 module.
    const { pkcs11KeyStore, storeKeyOf } = await import('./pkcs11-key-store.ts');
    const id = storeKeyOf(keyRef);
    let store = tokens.get(id);
    if (store === undefined) tokens.set(id, (store = Promise.resolve(pkcs11KeyStore(keyRef))));
    return store;
  };
  return {
    forRef,
    load: async (keyRef) => (await forRef(keyRef)).load(keyRef),
    async close() {
      for (const store of tokens.values()) await (await store).close();
      tokens.clear();
    },
  };
}
