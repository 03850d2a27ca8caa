import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { type EventBus, openTrustStore, type TrustStore } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';

export interface WiredTrust {
  readonly trust: TrustStore;
  /** Stops following `trust.changed`. */
  close(): void;
}

/**
 * The process's one trust store (core/trust-store.ts), which the MQTT and HTTPS listeners both follow: the
 * gateway's device and claim CAs, and the manufacturer CAs registered in the registry, read again on every
 * `trust.changed` event (a manufacturer CA registered or revoked by any process of the cluster).
 */
export async function wireTrustStore(deps: { registry: Registry; pem: { readonly deviceCa: string; readonly claimCa: string }; events: EventBus; log: Logger }): Promise<WiredTrust> {
  const trust = await openTrustStore({
    parse: (pem) => new X509Certificate(pem),
    device: deps.pem.deviceCa,
    claim: [deps.pem.claimCa],
    // Only active claims with a CA bundle: a revoked manufacturer CA stops being trusted at once.
    loadManufacturers: async () => (await deps.registry.listClaimIssuers()).flatMap((claim) => (claim.issuerPem ? [claim.issuerPem] : [])),
  });
  const unsubscribe = deps.events.subscribe((event) => {
    if (event.type !== 'trust.changed') return;
    trust.reload().then(
      (snapshot) => deps.log.info({ manufacturerCas: snapshot.anchors.manufacturer.length, version: snapshot.version }, 'claim issuers reloaded'),
      (error: unknown) => deps.log.error({ err: error }, 'could not reload claim issuers'),
    );
  });
  return { trust, close: unsubscribe };
}
