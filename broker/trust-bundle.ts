import type { Aedes } from 'aedes';
import type { Logger } from 'pino';
import { trustBundleOf, trustBundleTopic, type TrustSource } from '../core/index.ts';

/**
 * Keeps the retained `$fleetgate/trust/bundle` message (core/protocol-topics.ts) equal to the trust store's
 * bundle: published at start and after every change (a CA rotation), so a device that subscribes gets the
 * current bundle at once. In a cluster every broker publishes the same bundle into the shared retained store.
 * Returns the unsubscribe function.
 */
export function publishTrustBundle(aedes: Aedes, trust: TrustSource, log: Logger): () => void {
  let published: string | undefined;
  const publish = (bundle: string) => {
    if (bundle === published) return;
    published = bundle;
    aedes.publish({ cmd: 'publish', topic: trustBundleTopic, payload: Buffer.from(bundle), qos: 1, retain: true, dup: false }, (error?: Error) => {
      if (error) log.warn({ err: error }, 'could not publish the trust bundle');
    });
  };
  const start = trust.current();
  publish(trustBundleOf(start.anchors));
  return trust.subscribe((snapshot) => publish(trustBundleOf(snapshot.anchors)), start);
}
