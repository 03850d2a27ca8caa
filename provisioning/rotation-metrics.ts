import { Gauge, type Registry as PromRegistry } from 'prom-client';
import { rotationCampaignStates } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';

const progressStates = ['selected', 'pending', 'notified', 'renewed', 'failed', 'offline'] as const;

/**
 * Rotation campaign gauges, read from the registry at each scrape (README "Rotation campaigns"): devices per
 * campaign and state for campaigns still running or paused (finished ones drop out, so the label set stays
 * small), and campaigns per state.
 */
export function registerRotationMetrics(prometheus: PromRegistry, registry: Registry): void {
  new Gauge({
    name: 'fleetgate_rotation_campaign_devices',
    help: 'Devices of each running or paused rotation campaign, by progress state (selected, pending, notified, renewed, failed, offline)',
    labelNames: ['campaign', 'state'],
    registers: [prometheus],
    async collect() {
      this.reset();
      for (const campaign of await registry.listRotationCampaigns({ states: ['running', 'paused'] })) {
        for (const state of progressStates) this.set({ campaign: campaign.id, state }, campaign.progress[state]);
      }
    },
  });
  new Gauge({
    name: 'fleetgate_rotation_campaigns',
    help: 'Rotation campaigns by state',
    labelNames: ['state'],
    registers: [prometheus],
    async collect() {
      const all = await registry.listRotationCampaigns();
      for (const state of rotationCampaignStates) this.set({ state }, all.filter((campaign) => campaign.state === state).length);
    },
  });
}
