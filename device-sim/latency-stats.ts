/**
 * Latency samples and their summary. Every sample is kept: a fleet run has at most a few hundred thousand,
 * and exact percentiles are worth more here than a sketch's memory savings.
 */
export interface LatencySummary {
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export interface LatencyRecorder {
  record(ms: number): void;
  summary(): LatencySummary;
}

export function createLatencyRecorder(): LatencyRecorder {
  const samples: number[] = [];
  return {
    record(ms) {
      if (Number.isFinite(ms) && ms >= 0) samples.push(ms);
    },
    summary: () => summarizeLatencies(samples),
  };
}

/** Nearest-rank percentiles (the value below which p% of samples fall; always an observed sample). */
export function summarizeLatencies(samples: readonly number[]): LatencySummary {
  if (samples.length === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
  const round = (value: number) => Math.round(value * 10) / 10;
  return {
    count: sorted.length,
    min: round(sorted[0] ?? 0),
    mean: round(sorted.reduce((sum, value) => sum + value, 0) / sorted.length),
    p50: round(rank(50)),
    p90: round(rank(90)),
    p99: round(rank(99)),
    max: round(sorted[sorted.length - 1] ?? 0),
  };
}
