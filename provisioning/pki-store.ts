import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import {
  type CaCredential,
  type Clock,
  createIssuingCa,
  createRootCa,
  dayMs,
  FleetgateError,
  generateKeyPair,
  issueCertificate,
  privateKeyToPem,
  x509,
} from '../core/index.ts';
import { fileKeyStore, type KeyStores, openKeyStores } from './key-store.ts';

/**
 * Key custody on disk: `<data>/pki/`. The first root, device-issuing and claim-issuing CAs are created once,
 * on first start; after that they are only read. CAs made by a rotation are recorded in the registry and
 * keep their keys here too (provisioning/certificate-authorities.ts). Keys are written 0600 with O_EXCL, so
 * nothing is ever overwritten; only the server certificate is re-issued, when the host names change, it
 * nears expiry, or the active root changed. With a PKCS#11 key store (README "CA keys in an HSM") the CA keys
 * are in the token instead and `pki/ca-keys.json` holds their key_refs (URIs, no key material).
 */
export interface Pki {
  readonly root: CaCredential;
  readonly deviceCa: CaCredential;
  readonly claimCa: CaCredential;
  readonly pem: { readonly root: string; readonly deviceCa: string; readonly claimCa: string };
  /** The first CAs, root first: what a client needs to verify the server before any rotation. */
  readonly caBundle: readonly string[];
  /** Where the first CAs' keys are: file names in `pki/` or PKCS#11 URIs (key_ref of their registry rows). */
  readonly keyRefs: { readonly root: string; readonly deviceCa: string; readonly claimCa: string };
}

/** The key files of the first CAs, relative to `pki/` (the key_ref of their registry rows). */
export const initialKeyFiles = { root: 'root-ca.key', deviceCa: 'device-ca.key', claimCa: 'claim-ca.key' } as const;

const caFiles = {
  root: { cert: 'ca.crt', key: initialKeyFiles.root, name: 'fleetgate root CA' },
  deviceCa: { cert: 'device-ca.crt', key: initialKeyFiles.deviceCa, name: 'fleetgate device CA' },
  claimCa: { cert: 'claim-ca.crt', key: initialKeyFiles.claimCa, name: 'fleetgate claim CA' },
} as const;



/** The key_refs of the first CAs when they are not the files above (a PKCS#11 token). */
const keyRefsFile = 'ca-keys.json';

const serverRenewBeforeMs = 30 * dayMs;

export function pkiDir(dataDir: string): string {
  return join(dataDir, 'pki');
}

/** True if the data directory already has a CA. */
export function hasPki(dataDir: string): boolean {
  return existsSync(join(pkiDir(dataDir), caFiles.root.cert));
}

/**
 * Opens the first CAs, creating them on first use. `keyStore` says where new CA keys go: absent for files
 * in `pki/`, or a PKCS#11 URI naming a token (the keys are generated inside it). `keyStores` loads the keys
 * (a process keeps one, so that a token session is shared).
 */
export async function loadOrCreatePki(options: { dataDir: string; clock: Clock; keyStore?: string | undefined; keyStores?: KeyStores }): Promise<Pki & { created: boolean }> {
  const dir = pkiDir(options.dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stores = options.keyStores ?? openKeyStores(dir);
  const present = [...Object.values(caFiles).flatMap((file) => [file.cert, file.key]), keyRefsFile].filter((name) => existsSync(join(dir, name)));
  const created = present.length === 0;
  if (created) await createCas(dir, options.clock, options.keyStore, stores);
  const keyRefs = existsSync(join(dir, keyRefsFile)) ? readKeyRefs(dir) : initialKeyFiles;
  const expected = Object.values(caFiles).map((file): string => file.cert).concat(keyRefs === initialKeyFiles ? Object.values(initialKeyFiles) : [keyRefsFile]);
  if (!created && !expected.every((name) => present.includes(name))) {
    throw new FleetgateError('PKI_CA_MISSING', { detail: { dir, present } });
  }

  const root = await readCa(dir, caFiles.root.cert, keyRefs.root, stores);
  const deviceCa = await readCa(dir, caFiles.deviceCa.cert, keyRefs.deviceCa, stores);
  const claimCa = await readCa(dir, caFiles.claimCa.cert, keyRefs.claimCa, stores);
  const pem = { root: readFileSync(join(dir, caFiles.root.cert), 'utf8'), deviceCa: readFileSync(join(dir, caFiles.deviceCa.cert), 'utf8'), claimCa: readFileSync(join(dir, caFiles.claimCa.cert), 'utf8') };
  return { root, deviceCa, claimCa, pem, caBundle: [pem.root, pem.deviceCa, pem.claimCa], keyRefs, created };
}

function readKeyRefs(dir: string): Pki['keyRefs'] {
  const refs = JSON.parse(readFileSync(join(dir, keyRefsFile), 'utf8')) as Partial<Record<keyof Pki['keyRefs'], unknown>>;
  if (typeof refs.root !== 'string' || typeof refs.deviceCa !== 'string' || typeof refs.claimCa !== 'string') {
    throw new FleetgateError('PKI_CA_MISSING', { detail: { file: join(dir, keyRefsFile), reason: 'root, deviceCa and claimCa key references expected' } });
  }
  return { root: refs.root, deviceCa: refs.deviceCa, claimCa: refs.claimCa };
}

/** Records where the first CAs' keys are now (after `fleetgate init --import-keys-to`). */
export function writeKeyRefs(dataDir: string, keyRefs: Pki['keyRefs']): void {
  writeFileSync(join(pkiDir(dataDir), keyRefsFile), JSON.stringify(keyRefs, null, 2) + '\n', { mode: 0o644 });
}

/** What a broker process needs from the PKI: certificates and the server's TLS pair, never a CA key. */
export interface BrokerPki {
  readonly pem: Pki['pem'];
  readonly server: ServerFiles;
  readonly caBundle: readonly string[];
}

export interface ServerFiles {
  readonly cert: string;
  readonly key: string;
}

/**
 * Reads the broker's share of a PKI that `fleetgate init` or `fleetgate provisioning` created (a shared or
 * copied `pki/` folder: ca.crt, device-ca.crt, claim-ca.crt, server.crt, server.key). CA keys are not read,
 * so they need not be there.
 */
export function loadBrokerPki(dataDir: string): BrokerPki {
  const dir = pkiDir(dataDir);
  const names = [caFiles.root.cert, caFiles.deviceCa.cert, caFiles.claimCa.cert, 'server.crt', 'server.key'];
  const missing = names.filter((name) => !existsSync(join(dir, name)));
  if (missing.length > 0) {
    throw new FleetgateError('PKI_CA_MISSING', {
      message: `The broker needs ${missing.join(', ')} in ${dir}; run \`fleetgate provisioning\` (or \`fleetgate init\`) on this data directory first, or copy its pki/ folder here.`,
      detail: { dir, missing },
    });
  }
  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  const pem = { root: read(caFiles.root.cert), deviceCa: read(caFiles.deviceCa.cert), claimCa: read(caFiles.claimCa.cert) };
  return { pem, server: { cert: read('server.crt'), key: read('server.key') }, caBundle: [pem.root, pem.deviceCa, pem.claimCa] };
}

async function createCas(dir: string, clock: Clock, keyStore: string | undefined, stores: KeyStores): Promise<void> {
  const store = keyStore === undefined ? fileKeyStore(dir) : await stores.forRef(keyStore);
  // A random suffix tells installations apart: two fleetgates never trust each other's certificates by name.
  const suffix = Array.from(globalThis.crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, '0')).join('');
  const keys = { root: await store.generate(), deviceCa: await store.generate(), claimCa: await store.generate() };
  const root = await createRootCa({ commonName: `${caFiles.root.name} ${suffix}`, clock, keys: keys.root });
  const deviceCa = await createIssuingCa({ issuer: root, commonName: `${caFiles.deviceCa.name} ${suffix}`, clock, keys: keys.deviceCa });
  const claimCa = await createIssuingCa({ issuer: root, commonName: `${caFiles.claimCa.name} ${suffix}`, clock, keys: keys.claimCa });
  const refs: Record<string, string> = {};
  for (const [name, credential, file] of [['root', root, caFiles.root], ['deviceCa', deviceCa, caFiles.deviceCa], ['claimCa', claimCa, caFiles.claimCa]] as const) {
    // File keys keep their historic names (root-ca.key, …); a token's are labelled `<object>-root-ca-<suffix>`, ….
    const base = file.key.replace(/\.key$/, '');
    refs[name] = await keys[name].save(store.kind === 'file' ? base : `${tokenLabelPrefix(keyStore ?? '')}-${base}-${suffix}`);
    writeFileSync(join(dir, file.cert), credential.certificate.toString('pem') + '\n', { flag: 'wx', mode: 0o644 });
  }
  if (store.kind !== 'file') writeFileSync(join(dir, keyRefsFile), JSON.stringify(refs, null, 2) + '\n', { flag: 'wx', mode: 0o644 });
}

/** The object= of a `--key-store` URI: what the first CAs' key labels start with (default "fleetgate"). */
function tokenLabelPrefix(uri: string): string {
  const object = /;object=([^;?]*)/.exec(uri)?.[1];
  return object === undefined || object === '' ? 'fleetgate' : decodeURIComponent(object);
}

async function readCa(dir: string, cert: string, keyRef: string, stores: KeyStores): Promise<CaCredential> {
  const key = await stores.load(keyRef);
  const certificate = new x509.X509Certificate(readFileSync(join(dir, cert), 'utf8'));
  return key.crypto === undefined ? { certificate, privateKey: key.privateKey } : { certificate, privateKey: key.privateKey, crypto: key.crypto };
}

/** The server pair as `ensureServerCertificate` last wrote it (a broker process reads it again on every trust change). */
export function readServerFiles(dataDir: string): ServerFiles {
  const dir = pkiDir(dataDir);
  return { cert: readFileSync(join(dir, 'server.crt'), 'utf8'), key: readFileSync(join(dir, 'server.key'), 'utf8') };
}

/**
 * Keeps `pki/server.crt` issued by `root` (the active root), for `hostnames`, `localhost` and the loopback
 * addresses, and at least 30 days from expiry; re-issues it otherwise.
 */
export async function ensureServerCertificate(options: { dataDir: string; root: CaCredential; hostnames: readonly string[]; clock: Clock }): Promise<ServerFiles> {
  const { root, hostnames, clock } = options;
  const dir = pkiDir(options.dataDir);
  const certPath = join(dir, 'server.crt');
  const keyPath = join(dir, 'server.key');
  const dnsNames = [...new Set([...hostnames.filter((h) => !isIp(h)), 'localhost'])];
  const ipAddresses = [...new Set([...hostnames.filter(isIp), '127.0.0.1', '::1'])];
  if (existsSync(certPath) && existsSync(keyPath)) {
    const cert = readFileSync(certPath, 'utf8');
    const current = new X509Certificate(cert);
    const covers = dnsNames.every((name) => current.checkHost(name) !== undefined) && ipAddresses.every((ip) => current.checkIP(ip) !== undefined);
    const fresh = new Date(current.validTo).getTime() - clock.now().getTime() > serverRenewBeforeMs;
    if (covers && fresh && current.checkIssued(new X509Certificate(root.certificate.toString('pem')))) {
      return { cert, key: readFileSync(keyPath, 'utf8') };
    }
  }
  const keys = await generateKeyPair();
  const issued = await issueCertificate({ issuer: root, publicKey: keys.publicKey, profile: { kind: 'server', dnsNames, ipAddresses }, clock });
  const key = await privateKeyToPem(keys.privateKey);
  // The server pair is derived data (re-issued from the root at will), so replacing it is not a loss.
  writeSecret(keyPath, key, true);
  writeFileSync(certPath, issued.pem, { mode: 0o644 });
  return { cert: issued.pem, key };
}

/** Private keys and tokens: owner-only from the first byte (the mode applies at creation). */
export function writeSecret(path: string, content: string, replace = false): void {
  writeFileSync(path, content, { flag: replace ? 'w' : 'wx', mode: 0o600 });
}

function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}
