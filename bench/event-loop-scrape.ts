import { apiRequest } from '../cli/api-client.ts';

/** Event-loop delay of a fleetgate process since its previous scrape, in ms. */
export interface EventLoopDelay {
  readonly maxMs: number;
  readonly p99Ms: number;
}

/**
 * Reads fleetgate's own event-loop figures from its GET /metrics (prom-client default metrics with prefix
 * `fleetgate_`, provisioning/prometheus-metrics.ts): its monitorEventLoopDelay histogram is reset at every
 * scrape, so two scrapes bracket a window. No product code is needed for it.
 */
export async function readEventLoopDelay(apiUrl: string, ca: string): Promise<EventLoopDelay> {
  const { status, body } = await apiRequest<string>({ baseUrl: apiUrl, ca }, 'GET', '/metrics');
  if (status !== 200) throw new Error(`GET /metrics: ${status}`);
  return { maxMs: gaugeMs(body, 'fleetgate_nodejs_eventloop_lag_max_seconds'), p99Ms: gaugeMs(body, 'fleetgate_nodejs_eventloop_lag_p99_seconds') };
}

/** A gauge of the Prometheus text format, seconds → ms (two decimals). */
export function gaugeMs(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  const value = Number(line?.slice(line.lastIndexOf(' ') + 1));
  if (line === undefined || !Number.isFinite(value)) throw new Error(`${name} is not in the metrics`);
  return Math.round(value * 1e5) / 100;
}
