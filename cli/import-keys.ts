import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ecdsaSha256, FleetgateError, x509 } from '../core/index.ts';
import { isPkcs11Uri, pkiDir, writeKeyRefs } from '../provisioning/index.ts';
import type { DataDir } from './data-dir.ts';

export interface ImportedKey {
  readonly caId: string;
  readonly role: string;
  readonly from: string;
  readonly to: string;
}

/**
 * `fleetgate init --import-keys-to pkcs11:…` (README "CA keys in an HSM"): copies every CA key file of the
 * data directory into the token (non-extractable there), checks that the token's copy makes signatures the
 * CA certificate's public key verifies, records the token URIs as the rows' key_refs (and in
 * pki/ca-keys.json for the first CAs), and only then deletes the files. A failure before the registry
 * change leaves the files and the registry as they were; running it again finds the keys already imported.
 */
export async function importKeysToToken(dataDir: DataDir, storeUri: string, actor = 'cli'): Promise<ImportedKey[]> {
  if (!isPkcs11Uri(storeUri)) throw new FleetgateError('PKI_KEY_STORE_UNAVAILABLE', { message: '--import-keys-to takes a PKCS#11 URI: pkcs11:token=<label>;object=<prefix>?module-path=<library>.', detail: { reason: 'not a pkcs11: URI' } });
  const { pkcs11KeyStore } = await import('../provisioning/pkcs11-key-store.ts');
  const store = pkcs11KeyStore(storeUri);
  const prefix = /;object=([^;?]*)/.exec(storeUri)?.[1] ?? 'fleetgate';
  const dir = pkiDir(dataDir.path);
  const imported: ImportedKey[] = [];
  try {
    for (const ca of await dataDir.registry.listCertificateAuthorities()) {
      if (ca.keyRef === null || isPkcs11Uri(ca.keyRef)) continue;
      const file = join(dir, ca.keyRef);
      if (!existsSync(file)) throw new FleetgateError('PKI_CA_MISSING', { detail: { caId: ca.id, key: ca.keyRef } });
      const to = await store.importPem(`${decodeURIComponent(prefix)}-${ca.keyRef.replace(/\.key$/, '')}-${ca.id.slice(0, 8)}`, readFileSync(file, 'utf8'));
      // A test signature made in the token, verified with the CA certificate's public key.
      const key = await store.load(to);
      const challenge = globalThis.crypto.getRandomValues(new Uint8Array(32));
      const signature = await key.crypto!.subtle.sign(ecdsaSha256, key.privateKey, challenge);
      const publicKey = await new x509.X509Certificate(ca.pem).publicKey.export();
      if (!(await globalThis.crypto.subtle.verify(ecdsaSha256, publicKey, signature, challenge))) {
        throw new FleetgateError('PKI_KEY_STORE_UNAVAILABLE', { message: `The token's copy of CA ${ca.id}'s key did not verify against its certificate; nothing was changed.`, detail: { caId: ca.id, reason: 'test signature did not verify' } });
      }
      imported.push({ caId: ca.id, role: ca.role, from: ca.keyRef, to });
    }
    if (imported.length === 0) return imported;
    await dataDir.registry.changeCertificateAuthorities({
      keyRefs: imported.map(({ caId, from, to }) => ({ id: caId, from, to })),
      audit: { actor, action: 'ca.keys.import', result: 'ok', detail: { keys: imported.map(({ caId, to }) => ({ caId, keyRef: to })) } },
    });
    const refOf = (from: string) => imported.find((key) => key.from === from)?.to ?? from;
    const refs = dataDir.pki.keyRefs;
    writeKeyRefs(dataDir.path, { root: refOf(refs.root), deviceCa: refOf(refs.deviceCa), claimCa: refOf(refs.claimCa) });
    for (const key of imported) unlinkSync(join(dir, key.from));
    return imported;
  } finally {
    await store.close();
  }
}
