import type { TrustedIssuers } from './peer-identity.ts';
import { type ParseCertificate, trustedIssuers } from './pki/trusted-issuers.ts';

/** The CAs whose leaves the mTLS edges accept: device CA, claim CAs, and manufacturer CAs (birth certificates). */
export interface TrustAnchors {
  readonly device: string;
  readonly claim: readonly string[];
  /** Bundles registered with `POST /v1/claim-issuers`: first certificate the CA, the rest its chain. */
  readonly manufacturer: readonly string[];
}

/** One state of the trust store; `version` grows by one at each change. */
export interface TrustSnapshot {
  readonly version: number;
  readonly anchors: TrustAnchors;
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
  /** Reads the manufacturer CAs again and, if they changed, tells every subscriber. Concurrent calls run one after the other. */
  reload(): Promise<TrustSnapshot>;
}

export interface TrustStoreDeps {
  readonly parse: ParseCertificate;
  /** The gateway's own CAs: fixed for the life of the process. */
  readonly device: string;
  readonly claim: readonly string[];
  /** Where the manufacturer CAs live (the registry); they can be added and revoked while running. */
  readonly loadManufacturers: () => Promise<readonly string[]>;
}

/**
 * The one set of trusted CAs of a process, which both TLS listeners (MQTT, broker/mqtt-listener.ts, and the
 * HTTPS API, provisioning/api/build-api.ts) follow: each answers new handshakes with the CAs of the latest
 * snapshot (`listenerSecureContext`, core/tls-profile.ts) and classifies peers with its issuers. The
 * composition root (cli/) makes one per process and reloads it on `trust.changed` and after a Redis outage.
 */
export async function openTrustStore(deps: TrustStoreDeps): Promise<TrustStore> {
  const build = (version: number, manufacturer: readonly string[]): TrustSnapshot => {
    const anchors = { device: deps.device, claim: [...deps.claim], manufacturer: [...manufacturer] };
    return { version, anchors, issuers: trustedIssuers(deps.parse, anchors) };
  };
  let snapshot = build(1, await deps.loadManufacturers());
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
    const manufacturer = await deps.loadManufacturers();
    const same = manufacturer.length === snapshot.anchors.manufacturer.length && manufacturer.every((pem, i) => pem === snapshot.anchors.manufacturer[i]);
    if (!same) snapshot = build(snapshot.version + 1, manufacturer);
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
