import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { anchorsFromCas, type EventBus, openTrustStore, type TrustAnchors, type TrustStore } from '../core/index.ts';
import { type Pki, readServerFiles, type ServerFiles } from '../provisioning/index.ts';
import type { Registry } from '../registry/index.ts';

export interface WiredTrust {
  readonly trust: TrustStore;
  /** Stops following `trust.changed`. */
  close(): void;
}

/**
 * The process's one trust store (core/trust-store.ts), which the MQTT and HTTPS listeners both follow: the
 * CAs recorded in the registry (every root, device and claim CA not retired: README "Rotating certificates
 * and CAs"), the manufacturer CAs registered there, and the server pair in `<data>/pki/`, read again on
 * every `trust.changed` event (a CA rotated, or a manufacturer CA registered or revoked, by any process of
 * the cluster). Before provisioning has recorded any CA (a broker started first), the first CAs' files count.
 */
export async function wireTrustStore(deps: { registry: Registry; dataDir: string | { readServer: () => ServerFiles }; pem: Pki['pem']; events: EventBus; log: Logger }): Promise<WiredTrust> {
  const { dataDir } = deps;
  const readServer = typeof dataDir === 'string' ? () => readServerFiles(dataDir) : dataDir.readServer;
  const trust = await openTrustStore({
    parse: (pem) => new X509Certificate(pem),
    load: async () => {
      // Only active claims with a CA bundle: a revoked manufacturer CA stops being trusted at once.
      const manufacturer = (await deps.registry.listClaimIssuers()).flatMap((claim) => (claim.issuerPem ? [claim.issuerPem] : []));
      const cas = await deps.registry.listCertificateAuthorities();
      const anchors: TrustAnchors =
        cas.length > 0 ? anchorsFromCas(cas, manufacturer) : { roots: [deps.pem.root], device: [deps.pem.deviceCa], claim: [deps.pem.claimCa], manufacturer, cross: [] };
      const server = readServer();
      return { anchors, server: { cert: server.cert + crossFor(server.cert, anchors), key: server.key } };
    },
  });
  const unsubscribe = deps.events.subscribe((event) => {
    if (event.type !== 'trust.changed') return;
    trust.reload().then(
      (snapshot) => deps.log.info({ version: snapshot.version, roots: snapshot.anchors.roots.length, manufacturerCas: snapshot.anchors.manufacturer.length }, 'trusted CAs reloaded'),
      (error: unknown) => deps.log.error({ err: error }, 'could not reload the trusted CAs'),
    );
  });
  return { trust, close: unsubscribe };
}

/**
 * The cross-certificates the server sends after its certificate: during a root rotation, the server's root
 * signed by the other root, so that a device holding only that other root still builds a path to it.
 * OpenSSL clients look in their own trust store first (X509_V_FLAG_TRUSTED_FIRST, the default since 1.1.0),
 * so a device holding the server's own root is not led astray by the extra certificate.
 */
function crossFor(serverPem: string, anchors: TrustAnchors): string {
  const server = new X509Certificate(serverPem);
  const issuingRoot = anchors.roots.map((pem) => new X509Certificate(pem)).find((root) => server.checkIssued(root) && server.verify(root.publicKey));
  if (issuingRoot === undefined) return '';
  return anchors.cross
    .filter((pem) => {
      const cross = new X509Certificate(pem);
      return cross.subject === issuingRoot.subject && cross.publicKey.equals(issuingRoot.publicKey);
    })
    .join('');
}
