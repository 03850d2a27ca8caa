import type { TrustedIssuers } from './peer-identity.ts';
import { type CaView, isTrusted } from './pki/ca-rotation.ts';
import { listenerSecureContext } from './tls-profile.ts';
import { type ParseCertificate, trustedIssuers } from './pki/trusted-issuers.ts';

/**
 * The CAs of one moment of the trust store: every root, device CA and claim CA not retired (a rotation keeps
 * old and new side by side, README "Rotating certificates and CAs"), the manufacturer CAs (birth
 * certificates), and the cross-certificates between trusted roots.
 */
export interface TrustAnchors {
  readonly roots: readonly string[];
  readonly device: readonly string[];
  readonly claim: readonly string[];
  /** Bundles registered with `POST /v1/claim-issuers`: first certificate the CA, the rest its chain. */
  readonly manufacturer: readonly string[];
  /** A root's certificate signed by the other root of a rotation: sent after the server certificate, so that a device trusting either root verifies it. */
  readonly cross: readonly string[];
}

/** The TLS server pair both listeners present: the server certificate followed by the cross-certificate its root needs, if any. */
export interface ServerPair {
  readonly cert: string;
  readonly key: string;
}

/** One state of the trust store; `version` grows by one at each change. */
export interface TrustSnapshot {
  readonly version: number;
  readonly anchors: TrustAnchors;
  readonly server: ServerPair;
  /** For `classifyPeer` / `credentialOf` (core/peer-identity.ts). */
  readonly issuers: TrustedIssuers;
}

/** What a TLS listener needs: the trust as it is now, and word when it changes. */
export interface TrustSource {
  current(): TrustSnapshot;
  /**
   * Called after each change, with the new state; returns the unsubscribe function. `since` is the snapshot
   * the subscriber built its state from: if the store has moved on already, the listener is called at once,
   * so a subscriber that read `current()`, then awaited, then subscribed misses nothing.
   */
  subscribe(listener: (snapshot: TrustSnapshot) => void, since?: TrustSnapshot): () => void;
}

export interface TrustStore extends TrustSource {
  /** Reads the CAs and the server pair again and, if they changed, tells every subscriber. Concurrent calls run one after the other. */
  reload(): Promise<TrustSnapshot>;
}

export interface TrustStoreDeps {
  readonly parse: ParseCertificate;
  /** Reads the trusted CAs (the registry: they rotate, and manufacturer CAs come and go, while running) and the server pair. */
  readonly load: () => Promise<{ readonly anchors: TrustAnchors; readonly server: ServerPair }>;
}

/**
 * The one set of trusted CAs of a process, which both TLS listeners (MQTT, broker/mqtt-listener.ts, and the
 * HTTPS API, provisioning/api/build-api.ts) follow: each answers new handshakes with the CAs and server pair
 * of the latest snapshot (`snapshotSecureContext`) and classifies peers with its issuers. The
 * composition root (cli/) makes one per process and reloads it on `trust.changed` and after a Redis outage.
 */
export async function openTrustStore(deps: TrustStoreDeps): Promise<TrustStore> {
  const build = (version: number, loaded: { anchors: TrustAnchors; server: ServerPair }): TrustSnapshot => ({
    version,
    anchors: loaded.anchors,
    server: loaded.server,
    issuers: trustedIssuers(deps.parse, loaded.anchors),
  });
  let snapshot = build(1, await deps.load());
  // Each listener with the version it last applied without throwing: one that failed is not lost behind
  // the others, and is called again at the next reload even when nothing changed meanwhile.
  const listeners = new Map<(snapshot: TrustSnapshot) => void, number>();
  let queue: Promise<unknown> = Promise.resolve();

  const notify = () => {
    const failures: unknown[] = [];
    for (const [listener, applied] of [...listeners]) {
      if (applied >= snapshot.version || !listeners.has(listener)) continue;
      try {
        listener(snapshot);
        listeners.set(listener, snapshot.version);
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, `${failures.length} trust listener(s) could not apply trust version ${snapshot.version}; retried at the next reload`);
  };

  const reloadNow = async () => {
    const loaded = await deps.load();
    const same = JSON.stringify(loaded.anchors) === JSON.stringify(snapshot.anchors) && loaded.server.cert === snapshot.server.cert && loaded.server.key === snapshot.server.key;
    if (!same) snapshot = build(snapshot.version + 1, loaded);
    notify();
    return snapshot;
  };

  return {
    current: () => snapshot,
    subscribe(listener, since = snapshot) {
      listeners.set(listener, since.version);
      if (since.version < snapshot.version) notify();
      return () => void listeners.delete(listener);
    },
    reload() {
      const next = queue.then(reloadNow);
      queue = next.catch(() => undefined);
      return next;
    },
  };
}

/** The anchors of the CAs as recorded (registry certificate_authorities): every one not retired, by role. */
export function anchorsFromCas(cas: readonly (CaView & { readonly pem: string })[], manufacturer: readonly string[]): TrustAnchors {
  const pems = (role: CaView['role']) => cas.filter((ca) => ca.role === role && isTrusted(ca)).map((ca) => ca.pem);
  return { roots: pems('root'), device: pems('device'), claim: pems('claim'), manufacturer: [...manufacturer], cross: pems('cross') };
}

/**
 * The trust bundle, PEM (GET /v1/pki/trust-bundle, EST /cacerts, `$fleetgate/trust/bundle`): every trusted
 * root, the cross-certificates between them, then the issuing CAs. A device keeps a new root from it only if
 * a cross-certificate in the same bundle chains it to a root the device already trusts.
 */
export function trustBundleOf(anchors: Pick<TrustAnchors, 'roots' | 'cross' | 'device' | 'claim'>): string {
  return [...anchors.roots, ...anchors.cross, ...anchors.device, ...anchors.claim].join('');
}

/** Every CA certificate a TLS server needs to verify client chains: roots, then issuing and manufacturer CAs. */
export function clientVerificationCas(anchors: TrustAnchors): string[] {
  return [...anchors.roots, ...anchors.device, ...anchors.claim, ...anchors.manufacturer];
}

/** What both listeners pass to Node's TLS server for a snapshot (core/tls-profile.ts listenerSecureContext). */
export function snapshotSecureContext(snapshot: TrustSnapshot) {
  return listenerSecureContext({ cert: snapshot.server.cert, key: snapshot.server.key, ca: clientVerificationCas(snapshot.anchors) });
}
