import type { Logger } from 'pino';
import type { Clock, EventBus } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';

export interface RotationSchedulerDeps {
  readonly registry: Registry;
  readonly events: EventBus;
  readonly clock: Clock;
  readonly log: Logger;
  /** How often running campaigns are looked for (restarts, resumes by another process) and completion checked. */
  readonly sweepMs?: number;
  /** Monotonic milliseconds, for the token bucket. */
  readonly now?: () => number;
}

/**
 * Runs rotation campaigns (README "Rotation campaigns"): one loop per running campaign reaches its pending
 * devices at no more than the campaign's rate (a token bucket whose burst is a tenth of a second's worth,
 * at least one), marks them reached in the registry and announces each on the event bus, where the broker
 * holding the device's live session delivers the rotate command (broker/rotation-notices.ts). A device that
 * renews, by any transport, is counted from the registry; a campaign whose every device renewed completes.
 *
 * Everything it needs is in the registry, so it survives restarts: `start` picks up running campaigns, and
 * a sweep every few seconds picks up campaigns resumed elsewhere. A pause is read by the registry's
 * dispatch (nothing is dispatched for a campaign that is not running), so it takes effect at once. One
 * provisioning process runs campaigns; several would each apply the rate (the registry's write lock still
 * reaches each device once).
 */
export interface RotationScheduler {
  /** Starts the loop of a running campaign (new or resumed); nothing when it already runs. */
  follow(campaignId: string): void;
  /** Picks up running campaigns now, then sweeps every `sweepMs`. */
  start(): void;
  close(): Promise<void>;
}

export function createRotationScheduler(deps: RotationSchedulerDeps): RotationScheduler {
  const { registry, events, log } = deps;
  const now = deps.now ?? (() => performance.now());
  const sweepMs = deps.sweepMs ?? 2_000;
  const loops = new Map<string, Promise<void>>();
  let closed = false;
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> = Promise.resolve();
  const sleepers = new Set<() => void>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      }
      sleepers.add(done);
    });

  async function run(campaignId: string): Promise<void> {
    const campaign = await registry.getRotationCampaign(campaignId);
    if (campaign?.state !== 'running') return;
    const rate = campaign.ratePerSecond;
    const burst = Math.max(1, Math.floor(rate / 10));
    let tokens = burst;
    let at = now();
    while (!closed) {
      const t = now();
      tokens = Math.min(burst, tokens + ((t - at) / 1000) * rate);
      at = t;
      const allowed = Math.floor(tokens);
      if (allowed >= 1) {
        const reached = await registry.dispatchRotation(campaignId, allowed);
        tokens -= reached.length;
        for (const device of reached) {
          // A device that renewed on its own meanwhile needs no command.
          if (!device.renewed) await events.publish({ type: 'rotation.notify', campaignId, deviceId: device.deviceId });
        }
        // Everyone reached, or the campaign is no longer running (paused, closed): the sweep takes over.
        if (reached.length < allowed) return;
      }
      // Until the bucket holds a full burst again: one registry write per burst, not per device.
      await sleep(Math.max(1, Math.ceil(((burst - tokens) * 1000) / rate)));
    }
  }

  function follow(campaignId: string): void {
    if (closed || loops.has(campaignId)) return;
    const loop = run(campaignId)
      .catch((error: unknown) => log.error({ err: error, campaignId }, 'rotation campaign loop failed; the next sweep restarts it'))
      .finally(() => loops.delete(campaignId));
    loops.set(campaignId, loop);
  }

  function sweep(): Promise<void> {
    sweeping = sweepOnce().catch((error: unknown) => log.error({ err: error }, 'rotation campaign sweep failed'));
    return sweeping;
  }

  async function sweepOnce(): Promise<void> {
    if (closed) return;
    const campaigns = await registry.listRotationCampaigns({ states: ['running', 'paused'] });
    for (const campaign of campaigns) {
      const { selected, renewed, pending } = campaign.progress;
      if (renewed >= selected) {
        const done = await registry.completeRotationCampaign(campaign.id, { actor: 'scheduler', action: 'rotation.complete', result: 'ok' });
        if (done !== undefined) log.info({ campaignId: campaign.id, renewed }, 'rotation campaign completed');
      } else if (campaign.state === 'running' && pending > 0) {
        follow(campaign.id);
      }
    }
  }

  const scheduleSweep = () => {
    if (closed) return;
    sweepTimer = setTimeout(() => void sweep().finally(scheduleSweep), sweepMs);
    sweepTimer.unref();
  };

  return {
    follow,
    start() {
      void sweep().finally(scheduleSweep);
    },
    async close() {
      closed = true;
      clearTimeout(sweepTimer);
      for (const done of [...sleepers]) done();
      await Promise.allSettled([sweeping, ...loops.values()]);
    },
  };
}
