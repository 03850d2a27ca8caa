import { Gauge, type Registry as PrometheusRegistry } from 'prom-client';
import type { FleetChecks } from './fleet-check-collector.ts';

/** `fleetgate_check_status` values: what alert rules compare with. */
export const checkStatusValue = { pass: 0, warn: 1, fail: 2 } as const;

/**
 * The fleet health checks as Prometheus gauges, computed on scrape from the checks' short-lived cache
 * (provisioning/fleet-check-collector.ts), so scrapes every few seconds cost one set of SQL counts per
 * cache period. Labels are check ids only (a fixed set). When a run fails (a cluster's Redis out of
 * reach), the gauges keep no stale values: they are left empty for that scrape and the failure is logged.
 */
export function registerFleetCheckGauges(registry: PrometheusRegistry, checks: FleetChecks, onError: (error: unknown) => void): void {
  let latest: Promise<Awaited<ReturnType<FleetChecks['run']>> | undefined> | undefined;
  // Both gauges are collected in one scrape: share the run between them.
  const run = () => {
    latest ??= checks.run().catch((error: unknown) => {
      onError(error);
      return undefined;
    });
    const pending = latest;
    setTimeout(() => {
      if (latest === pending) latest = undefined;
    }, 0).unref();
    return pending;
  };
  new Gauge({
    name: 'fleetgate_check_findings',
    help: 'Fleet health check: how many things it found (devices, CAs, claims, policies, …); 0 when it passes',
    labelNames: ['check'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const result of (await run())?.results ?? []) this.set({ check: result.id }, result.count);
    },
  });
  new Gauge({
    name: 'fleetgate_check_status',
    help: 'Fleet health check status: 0 pass, 1 warn, 2 fail',
    labelNames: ['check'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const result of (await run())?.results ?? []) this.set({ check: result.id }, checkStatusValue[result.status]);
    },
  });
}
