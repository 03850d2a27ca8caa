import { formatTable } from '../cli/table.ts';

/**
 * The shape of `bench/results.json` and the arithmetic behind it: medians over repetitions and the
 * fleetgate/Mosquitto ratio. Pure: unit-tested in test/bench/bench-report.test.ts.
 */
export interface Metric {
  readonly name: string;
  readonly unit: string;
  readonly fleetgate: number | null;
  readonly mosquitto: number | null;
  /** fleetgate / mosquitto; null when either side has no figure. */
  readonly ratio: number | null;
  /** Figures per repetition, load-generator CPU, saturation and other conditions behind the medians. */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface ResultsDocument {
  readonly machine: Readonly<Record<string, unknown>>;
  readonly date: string;
  readonly command: string;
  readonly conditions: readonly string[];
  readonly metrics: readonly Metric[];
}

/** The names the issue asks for, in its order; the suite must report every one (null if not measured). */
export const requiredMetricNames = [
  'mtls_connect_full_per_s',
  'mtls_connect_resumed_per_s',
  'qos0_msgs_per_s',
  'qos1_msgs_per_s',
  'latency_p50_ms',
  'latency_p99_ms',
  'rss_per_idle_conn_kib',
  'reconnect_storm_s',
  'enroll_per_s',
  'revoke_to_disconnect_p99_ms',
  'policy_check_ns',
] as const;

/** Median of the finite values; null when there are none (a side not measured or every run failed). */
export function median(values: readonly (number | null | undefined)[]): number | null {
  const finite = values.filter((value): value is number => typeof value === 'number' && Number.isFinite(value)).sort((a, b) => a - b);
  if (finite.length === 0) return null;
  const middle = Math.floor(finite.length / 2);
  return finite.length % 2 === 1 ? (finite[middle] ?? null) : ((finite[middle - 1] ?? 0) + (finite[middle] ?? 0)) / 2;
}

export function ratio(fleetgate: number | null, mosquitto: number | null): number | null {
  if (fleetgate === null || mosquitto === null || mosquitto === 0) return null;
  return round(fleetgate / mosquitto, 3);
}

/** Three significant digits (at least integer precision for large figures): enough for noisy benchmarks. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  const factor = 10 ** Math.max(0, digits - 1 - magnitude);
  return Math.round(value * factor) / factor;
}

export function metric(name: string, unit: string, fleetgateRuns: readonly (number | null)[], mosquittoRuns: readonly (number | null)[] | null, detail?: Record<string, unknown>): Metric {
  const fleetgate = median(fleetgateRuns);
  const mosquitto = mosquittoRuns === null ? null : median(mosquittoRuns);
  return {
    name,
    unit,
    fleetgate: fleetgate === null ? null : round(fleetgate),
    mosquitto: mosquitto === null ? null : round(mosquitto),
    ratio: ratio(fleetgate, mosquitto),
    ...(detail === undefined ? {} : { detail }),
  };
}

/** Names the issue requires that a document lacks; empty when complete. */
export function missingMetrics(document: Pick<ResultsDocument, 'metrics'>): string[] {
  const present = new Set(document.metrics.map((m) => m.name));
  return requiredMetricNames.filter((name) => !present.has(name));
}

/** The loader is saturated when it used more than 90 % of a core: its figure is then a lower bound. */
export function loaderSaturated(cpuSeconds: number, wallSeconds: number, cores = 1): boolean {
  return wallSeconds > 0 && cpuSeconds / wallSeconds > 0.9 * cores;
}

/** "54–57%" for the loader's CPU over a scenario's runs (cores → percent of one core); "-" when unknown. */
export function formatCpuRange(cores: readonly (number | null)[]): string {
  const known = cores.filter((value): value is number => value !== null && Number.isFinite(value)).map((value) => Math.round(value * 100));
  if (known.length === 0) return '-';
  const low = Math.min(...known);
  const high = Math.max(...known);
  return low === high ? `${low}%` : `${low}–${high}%`;
}

/** metric | unit | fleetgate | mosquitto | ratio | loader CPU (fleetgate runs / mosquitto runs) | note. */
export function formatMetricsTable(metrics: readonly Metric[]): string {
  const show = (value: number | null) => (value === null ? '-' : String(value));
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  return formatTable(
    ['metric', 'unit', 'fleetgate', 'mosquitto', 'ratio', 'loader cpu', 'note'],
    metrics.map((m) => [m.name, m.unit, show(m.fleetgate), show(m.mosquitto), m.ratio === null ? '-' : `${m.ratio}×`, text(m.detail?.loaderCpu) || '-', text(m.detail?.note)]),
  );
}
