import { readFileSync } from 'node:fs';
import * as graphene from 'graphene-pk11';
import { Crypto as P11Crypto } from 'node-webcrypto-p11';
import { type CaCredential, ecdsaP256, FleetgateError, pemBlocks, x509 } from '../core/index.ts';
import type { CaKey, KeyStore, NewCaKey } from './key-store.ts';

type PrivateKey = CaCredential['privateKey'];
type Signer = NonNullable<CaCredential['crypto']>;

/**
 * CA keys in a PKCS#11 token (README "CA keys in an HSM"), through node-webcrypto-p11: a WebCrypto provider
 * whose keys @peculiar/x509 signs with, so certificates, CRLs and OCSP answers are signed inside the token and
 * no key byte ever reaches this process. Keys are generated in the token as sensitive, non-extractable token
 * objects, labelled; a key_ref is an RFC 7512 URI:
 * `pkcs11:token=<label>;object=<key label>;type=private?module-path=<library>`.
 *
 * The PIN comes from FLEETGATE_PKCS11_PIN or the file FLEETGATE_PKCS11_PIN_FILE, read each time a session is
 * opened (never a flag, never logged). One session per token; operations on it run one at a time (a PKCS#11
 * session has one active operation). Any token error closes the session and fails with
 * PKI_KEY_STORE_UNAVAILABLE; the next operation opens a new one, so the process recovers without a restart
 * when the token is back.
 */
export interface Pkcs11KeyStore extends KeyStore {
  /** Copies a PKCS#8 PEM key into the token under `name` (non-extractable there) and returns its key_ref. */
  importPem(name: string, pem: string): Promise<string>;
  close(): Promise<void>;
}

export interface Pkcs11Uri {
  readonly token: string;
  /** The key's label; in `--key-store`, the prefix of the labels `fleetgate init` gives the first CAs' keys. */
  readonly object: string | undefined;
  readonly modulePath: string;
}

/** RFC 7512 §2.3: path attributes `;`-separated, query attributes `&`-separated, values percent-encoded. */
export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  const invalid = (reason: string) =>
    new FleetgateError('PKI_KEY_STORE_UNAVAILABLE', { message: `Invalid PKCS#11 URI (${reason}); expected pkcs11:token=<token label>;object=<key label>?module-path=<PKCS#11 library>.`, detail: { reason } });
  if (!uri.startsWith('pkcs11:')) throw invalid('it must start with pkcs11:');
  const [path = '', query = ''] = uri.slice('pkcs11:'.length).split('?', 2);
  const attributes = (text: string, separator: string) =>
    new Map(
      text
        .split(separator)
        .filter((part) => part !== '')
        .map((part) => {
          const at = part.indexOf('=');
          if (at <= 0) throw invalid(`attribute "${part}" has no value`);
          try {
            return [part.slice(0, at), decodeURIComponent(part.slice(at + 1))] as const;
          } catch {
            throw invalid(`attribute "${part.slice(0, at)}" is not percent-encoded correctly`);
          }
        }),
    );
  const pathAttributes = attributes(path, ';');
  const queryAttributes = attributes(query, '&');
  const token = pathAttributes.get('token');
  const modulePath = queryAttributes.get('module-path');
  if (token === undefined) throw invalid('token= is required');
  if (modulePath === undefined) throw invalid('module-path= is required');
  if (queryAttributes.has('pin-value')) throw invalid('the PIN never goes in the URI: set FLEETGATE_PKCS11_PIN or FLEETGATE_PKCS11_PIN_FILE');
  return { token, object: pathAttributes.get('object'), modulePath };
}

const encode = (value: string) => encodeURIComponent(value);
export const keyUri = (at: Pkcs11Uri, label: string): string => `pkcs11:token=${encode(at.token)};object=${encode(label)};type=private?module-path=${encode(at.modulePath)}`;
/** One store (one session) per module and token. */
export const storeKeyOf = (uri: string): string => {
  const { token, modulePath } = parsePkcs11Uri(uri);
  return `${modulePath}\n${token}`;
};

/** The user PIN, from the environment: never from a flag or the URI. */
export function pkcs11Pin(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FLEETGATE_PKCS11_PIN !== undefined && env.FLEETGATE_PKCS11_PIN !== '') return env.FLEETGATE_PKCS11_PIN;
  const file = env.FLEETGATE_PKCS11_PIN_FILE;
  if (file !== undefined && file !== '') {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (cause) {
      throw new FleetgateError('PKI_KEY_STORE_UNAVAILABLE', { message: `The PKCS#11 PIN file ${file} (FLEETGATE_PKCS11_PIN_FILE) cannot be read.`, detail: { reason: 'pin file unreadable' }, cause });
    }
  }
  throw new FleetgateError('PKI_KEY_STORE_UNAVAILABLE', { message: 'The PKCS#11 token needs its user PIN: set FLEETGATE_PKCS11_PIN or FLEETGATE_PKCS11_PIN_FILE.', detail: { reason: 'no pin' } });
}

interface Session {
  readonly crypto: P11Crypto;
  readonly keys: Map<string, PrivateKey>;
}

interface P11Key {
  readonly p11Object: { label: string };
}

export function pkcs11KeyStore(storeUri: string, env: NodeJS.ProcessEnv = process.env): Pkcs11KeyStore {
  const at = parsePkcs11Uri(storeUri);
  let session: Session | undefined;
  let tail: Promise<unknown> = Promise.resolve();

  const unavailable = (cause: unknown, operation: string) =>
    cause instanceof FleetgateError
      ? cause
      : new FleetgateError('PKI_KEY_STORE_UNAVAILABLE', {
          detail: { token: at.token, operation, reason: cause instanceof Error ? cause.message : String(cause) },
          cause,
        });

  // The library as last initialised: finalised after a failure, so that the next open initialises it again and
  // rescans the slots (a token that was removed and put back is only seen again after C_Initialize).
  let module: graphene.Module | undefined;
  const open = (): Session => {
    const pin = pkcs11Pin(env);
    module = graphene.Module.load(at.modulePath, 'fleetgate');
    try {
      module.initialize();
    } catch (error) {
      if (!(error instanceof Error && error.message.includes('CKR_CRYPTOKI_ALREADY_INITIALIZED'))) throw error;
    }
    // The token by label: slot numbers change as tokens come and go.
    const slots = module.getSlots(true);
    let slot: graphene.Slot | undefined;
    for (let i = 0; i < slots.length; i++) {
      if (slots.items(i).getToken().label.trim() === at.token) slot = slots.items(i);
    }
    if (slot === undefined) throw new FleetgateError('PKI_KEY_STORE_UNAVAILABLE', { detail: { token: at.token, reason: 'no token with that label' } });
    const opened = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
    try {
      opened.login(pin, graphene.UserType.USER);
    } catch (error) {
      // PKCS#11 logins are per application: another session of this process may have logged in already.
      if (!(error instanceof Error && error.message.includes('CKR_USER_ALREADY_LOGGED_IN'))) {
        opened.close();
        throw error;
      }
    }
    return { crypto: new P11Crypto({ session: opened }), keys: new Map() };
  };
  const drop = (reset: boolean) => {
    const current = session;
    session = undefined;
    try {
      current?.crypto.session.close();
    } catch {
      // The session is gone already (token removed, library reset): nothing left to close.
    }
    if (!reset) return;
    try {
      module?.finalize();
    } catch {
      // Not initialised: the next open initialises it.
    }
    module = undefined;
  };

  /** Runs `work` on the session, one operation at a time; a failure drops the session so that the next call reconnects. */
  const run = <T>(operation: string, work: (session: Session) => Promise<T>): Promise<T> => {
    const result = tail.then(async () => {
      try {
        session ??= open();
        return await work(session);
      } catch (error) {
        if (error instanceof FleetgateError && error.code === 'PKI_CA_MISSING') throw error;
        drop(true);
        throw unavailable(error, operation);
      }
    });
    tail = result.catch(() => undefined);
    return result;
  };

  const find = async (current: Session, label: string): Promise<PrivateKey | undefined> => {
    const cached = current.keys.get(label);
    if (cached !== undefined) return cached;
    for (const id of await current.crypto.keyStorage.keys()) {
      if (!id.startsWith('private-')) continue;
      const key = await current.crypto.keyStorage.getItem(id);
      if ((key as unknown as P11Key).p11Object.label === label) {
        current.keys.set(label, key as unknown as PrivateKey);
        return key as unknown as PrivateKey;
      }
    }
    return undefined;
  };
  const labelOf = (keyRef: string): string => {
    const ref = parsePkcs11Uri(keyRef);
    if (ref.object === undefined) throw new FleetgateError('PKI_CA_MISSING', { detail: { key: keyRef, reason: 'no object= in the key reference' } });
    return ref.object;
  };

  /** A WebCrypto whose `sign` runs in the token with the key labelled `label.current`; the rest is the platform's. */
  const signerFor = (label: { current: string }): Signer => {
    const platform = x509.cryptoProvider.get();
    const subtle = new Proxy(platform.subtle, {
      get(target, property) {
        if (property === 'sign') {
          return (algorithm: unknown, _key: PrivateKey, data: unknown) =>
            run('sign', async (current) => {
              const key = await find(current, label.current);
              if (key === undefined) throw new FleetgateError('PKI_CA_MISSING', { detail: { token: at.token, key: label.current } });
              return current.crypto.subtle.sign(algorithm as never, key as never, data as never);
            });
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    return { subtle, getRandomValues: platform.getRandomValues.bind(platform), randomUUID: platform.randomUUID.bind(platform) } as Signer;
  };

  /** Renames a key pair in the token (CKA_LABEL of both halves). */
  const relabel = async (keys: { privateKey: PrivateKey; publicKey: PrivateKey }, label: string) =>
    run('label', async (current) => {
      (keys.privateKey as unknown as P11Key).p11Object.label = label;
      (keys.publicKey as unknown as P11Key).p11Object.label = label;
      current.keys.set(label, keys.privateKey);
    });

  return {
    kind: 'pkcs11',
    async generate(): Promise<NewCaKey> {
      const label = { current: `fleetgate-new-${Array.from(globalThis.crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('')}` };
      const pair = await run('generate', async (current) => {
        const keys = (await current.crypto.subtle.generateKey({ ...ecdsaP256, label: label.current, token: true, sensitive: true, extractable: false } as never, false, ['sign', 'verify'])) as unknown as {
          privateKey: PrivateKey;
          publicKey: PrivateKey;
        };
        const spki = await current.crypto.subtle.exportKey('spki', keys.publicKey as never);
        current.keys.set(label.current, keys.privateKey);
        return { privateKey: keys.privateKey, publicKey: keys.publicKey, spki };
      });
      return {
        publicKey: new x509.PublicKey(pair.spki),
        privateKey: pair.privateKey,
        crypto: signerFor(label),
        async save(name) {
          const final = name;
          await relabel(pair, final);
          label.current = final;
          return keyUri(at, final);
        },
      };
    },
    async load(keyRef): Promise<CaKey> {
      const label = labelOf(keyRef);
      const privateKey = await run('load', async (current) => {
        const key = await find(current, label);
        if (key === undefined) throw new FleetgateError('PKI_CA_MISSING', { detail: { token: at.token, key: label } });
        return key;
      });
      return { privateKey, crypto: signerFor({ current: label }) };
    },
    has: async (keyRef) => {
      const label = labelOf(keyRef);
      return run('find', async (current) => (await find(current, label)) !== undefined);
    },
    async importPem(name, pem) {
      const [der] = pemBlocks(pem, ['PRIVATE KEY']);
      if (der === undefined) throw new FleetgateError('PKI_PEM_MALFORMED', { detail: { expected: 'PRIVATE KEY' } });
      const label = name;
      await run('import', async (current) => {
        if ((await find(current, label)) !== undefined) return;
        const key = await current.crypto.subtle.importKey('pkcs8', der as never, { ...ecdsaP256, label, token: true, sensitive: true } as never, false, ['sign']);
        current.keys.set(label, key as unknown as PrivateKey);
      });
      return keyUri(at, label);
    },
    async close() {
      await tail;
      drop(false);
    },
  };
}
