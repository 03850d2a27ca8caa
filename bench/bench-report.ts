import { formatTable } from '../cli/table.ts';

/**
 * The shape of `bench/results.json` and the arithmetic behind it: medians over repetitions per broker, and
 * every broker's ratio to Mosquitto measured in the same run (plus fleetgate ÷ minimal aedes on the same Node).
 * Pure: unit-tested in test/bench/bench-report.test.ts.
 */
export const referenceBroker = 'mosquitto';

/** One broker's figures for one metric. */
export interface BrokerFigures {
  readonly median: number | null;
  /** The value of each repetition (null: that run failed). */
  readonly runs: readonly (number | null)[];
  /** Load generator CPU per run, in cores (1 = its core saturated); null when it does not bound the figure. */
  readonly generatorCores: readonly (number | null)[];
  /** The broker's CPU per run, in cores, all its threads. */
  readonly brokerCores: readonly (number | null)[];
}

export interface Metric {
  readonly name: string;
  readonly unit: string;
  /** Per broker name (`mosquitto`, `fleetgate-node24`, `aedes-node20`, …), in the order they ran. */
  readonly brokers: Readonly<Record<string, BrokerFigures>>;
  /** X ÷ Mosquitto for every other broker X; null when a side has no figure or the generator bounded the metric. */
  readonly ratios: Readonly<Record<string, number | null>>;
  /** `fleetgate-nodeN/aedes-nodeN`: fleetgate ÷ minimal aedes on the same runtime (the 10 % goal). */
  readonly versusAedes: Readonly<Record<string, number | null>>;
  /** The generator was above 90 % of its core in some run: its figures are lower bounds, so no ratio is given. */
  readonly generatorBound: boolean;
  /** Why every ratio is null, when it is not for a missing figure. */
  readonly ratioNullReason?: string;
  /** Per-run details (errors, event-loop delay, …) and a note on the conditions. */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface ResultsDocument {
  readonly machine: Readonly<Record<string, unknown>>;
  /** Every runtime the Node brokers ran on: `node --version` and its OpenSSL. */
  readonly runtimes: Readonly<Record<string, { readonly node: string; readonly openssl: string }>>;
  readonly brokers: readonly string[];
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

export function ratio(value: number | null, reference: number | null): number | null {
  if (value === null || reference === null || reference === 0) return null;
  return round(value / reference, 3);
}

/** Three significant digits (at least integer precision for large figures): enough for noisy benchmarks. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  const factor = 10 ** Math.max(0, digits - 1 - magnitude);
  return Math.round(value * factor) / factor;
}

export interface BrokerRuns {
  readonly runs: readonly (number | null)[];
  readonly generatorCores?: readonly (number | null)[];
  readonly brokerCores?: readonly (number | null)[];
}

/** Above 90 % of one core in a run (the C generator is one thread; a Node worker one main thread). */
export const generatorBoundCores = 0.9;

/**
 * Medians per broker, ratios to Mosquitto and fleetgate ÷ minimal aedes per runtime. A generator above 90 % of
 * its core in any run of the metric (against any broker) makes every ratio null: the figure it produced is a
 * lower bound, and a ratio of a lower bound says nothing.
 */
export function metric(name: string, unit: string, byBroker: Readonly<Record<string, BrokerRuns>>, detail?: Record<string, unknown>): Metric {
  const brokers: Record<string, BrokerFigures> = {};
  const bound: string[] = [];
  for (const [broker, side] of Object.entries(byBroker)) {
    const m = median(side.runs);
    const generatorCores = side.generatorCores ?? side.runs.map(() => null);
    brokers[broker] = { median: m === null ? null : round(m), runs: side.runs.map((v) => (v === null ? null : round(v))), generatorCores: generatorCores.map((v) => (v === null ? null : round(v, 2))), brokerCores: (side.brokerCores ?? side.runs.map(() => null)).map((v) => (v === null ? null : round(v, 2))) };
    if (generatorCores.some((cores) => cores !== null && cores > generatorBoundCores)) bound.push(broker);
  }
  const rawMedian = (broker: string) => median(byBroker[broker]?.runs ?? []);
  const generatorBound = bound.length > 0;
  const ratios: Record<string, number | null> = {};
  const versusAedes: Record<string, number | null> = {};
  for (const broker of Object.keys(byBroker)) {
    if (broker !== referenceBroker && referenceBroker in byBroker) ratios[broker] = generatorBound ? null : ratio(rawMedian(broker), rawMedian(referenceBroker));
    const runtime = /^fleetgate-(node\d+)$/.exec(broker)?.[1];
    const aedes = `aedes-${runtime}`;
    if (runtime !== undefined && aedes in byBroker) versusAedes[`${broker}/${aedes}`] = generatorBound ? null : ratio(rawMedian(broker), rawMedian(aedes));
  }
  return {
    name,
    unit,
    brokers,
    ratios,
    versusAedes,
    generatorBound,
    ...(generatorBound ? { ratioNullReason: `generator-bound: the load generator was above ${generatorBoundCores * 100} % of its core in runs against ${bound.join(', ')}` } : {}),
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
  return wallSeconds > 0 && cpuSeconds / wallSeconds > generatorBoundCores * cores;
}

/** "54–57%" for CPU over a scenario's runs (cores → percent of one core); "-" when unknown. */
export function formatCpuRange(cores: readonly (number | null)[]): string {
  const known = cores.filter((value): value is number => value !== null && Number.isFinite(value)).map((value) => Math.round(value * 100));
  if (known.length === 0) return '-';
  const low = Math.min(...known);
  const high = Math.max(...known);
  return low === high ? `${low}%` : `${low}–${high}%`;
}

/** The brokers of a set of metrics, in first-seen order (the suite runs Mosquitto first). */
export function brokerColumns(metrics: readonly Metric[]): string[] {
  const seen = new Set<string>();
  for (const m of metrics) for (const broker of Object.keys(m.brokers)) seen.add(broker);
  return [...seen];
}

const showNumber = (value: number | null | undefined) => (value === null || value === undefined ? '-' : String(value));
const showRatio = (value: number | null | undefined) => (value === null || value === undefined ? '-' : `${value}×`);

/**
 * metric | unit | one column per broker: "median (ratio to Mosquitto)" | fleetgate ÷ aedes per runtime.
 * A generator-bound metric shows its medians and "gen-bound" where the ratios would be; notes go below (formatNotes).
 */
export function formatMetricsTable(metrics: readonly Metric[]): string {
  const brokers = brokerColumns(metrics);
  const versus = [...new Set(metrics.flatMap((m) => Object.keys(m.versusAedes)))];
  return formatTable(
    ['metric', 'unit', ...brokers, ...versus.map((pair) => pair.replace(/-node(\d+)\/aedes-node\d+$/, ' ÷ aedes (node$1)'))],
    metrics.map((m) => [
      m.name,
      m.unit,
      ...brokers.map((broker) => {
        const figures = m.brokers[broker];
        if (figures === undefined) return '';
        if (broker === referenceBroker || !(broker in m.ratios)) return showNumber(figures.median);
        return `${showNumber(figures.median)} (${m.generatorBound ? 'gen-bound' : showRatio(m.ratios[broker])})`;
      }),
      ...versus.map((pair) => (pair in m.versusAedes ? (m.generatorBound ? 'gen-bound' : showRatio(m.versusAedes[pair])) : '')),
    ]),
  );
}

/** One line per metric with a note or a generator-bound reason; metrics sharing a note share a line. */
export function formatNotes(metrics: readonly Metric[]): string {
  const lines: { names: string[]; text: string }[] = [];
  for (const m of metrics) {
    const text = [m.ratioNullReason, typeof m.detail?.note === 'string' ? m.detail.note : undefined].filter(Boolean).join('; ');
    if (text === '') continue;
    const last = lines.at(-1);
    if (last?.text === text) last.names.push(m.name);
    else lines.push({ names: [m.name], text });
  }
  return lines.map((line) => `${line.names.join(', ')}: ${line.text}`).join('\n');
}

/**
 * metric | per broker "generator a–b% · broker c–d%" over the runs: which side was the limit. Metrics taken
 * from the same runs (latency p50/p99/p99.9) have the same CPU and share one row.
 */
export function formatCpuTable(metrics: readonly Metric[]): string {
  const brokers = brokerColumns(metrics);
  const rows: { names: string[]; cells: string[] }[] = [];
  for (const m of metrics) {
    if (!Object.values(m.brokers).some((f) => f.generatorCores.some((c) => c !== null) || f.brokerCores.some((c) => c !== null))) continue;
    const cells = brokers.map((broker) => (m.brokers[broker] ? `${formatCpuRange(m.brokers[broker].generatorCores)} · ${formatCpuRange(m.brokers[broker].brokerCores)}` : ''));
    const last = rows.at(-1);
    // A subset of the brokers (fleetgate's event loop) with the same cells as the row above: the same runs.
    if (last !== undefined && cells.every((cell, i) => cell === '' || cell === last.cells[i])) last.names.push(m.name);
    else rows.push({ names: [m.name], cells });
  }
  return formatTable(
    ['cpu (generator · broker)', ...brokers],
    rows.map((row) => [row.names.length === 1 ? (row.names[0] as string) : `${row.names[0]} (+${row.names.length - 1} more, same runs)`, ...row.cells]),
  );
}
