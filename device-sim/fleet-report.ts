import type { FleetSummary } from './fleet-runner.ts';
import type { LatencySummary } from './latency-stats.ts';

/** Hints for failures an operator can fix from the simulator's side. */
const hints: Record<string, string> = {
  ENROLL_CLONE_SUSPECTED: 'these serials are already enrolled with other keys; run again with another --serial-prefix',
  ENROLL_CLAIM_EXHAUSTED: 'the claim has no uses left; create a claim with a larger --max-uses',
  ENROLL_RATE_LIMITED: 'the per-claim enrollment rate was exceeded after every retry; lower --concurrency or raise FLEETGATE_ENROLL_RATE_PER_CLAIM',
  CONNACK_NOT_AUTHORIZED: 'the gateway refused the certificate or claim (a used-up claim is refused at CONNECT); `fleetgate audit` says why',
  CONNECTION_REFUSED: 'nothing listens at the --mqtt address',
  TLS_ERROR: 'the device does not trust the gateway: check --ca (or ca.crt in --claim-dir) and the host name',
};

/** The end-of-run table: counts, rates, latency percentiles, then failures with an example and a hint. */
export function formatFleetSummary(summary: FleetSummary): string {
  const lines: string[] = [];
  const row = (label: string, value: string | number) => lines.push(`${label.padEnd(18)}${value}`);
  row('devices', summary.devices);
  row('enrolled', summary.enrolled);
  row('online', summary.online);
  row('failed', summary.failed);
  if (summary.interrupted > 0) row('interrupted', `${summary.interrupted} (stopped before enrolling)`);
  row('enrollment rate', `${summary.enrollmentsPerSecond} /s (${summary.enrolled} in ${(summary.enrollWindowMs / 1000).toFixed(2)} s)`);
  row('telemetry sent', summary.telemetrySent);
  row('renewals', summary.renewals + formatCounts(summary.renewalFailures, ' failed: '));
  row('retries', Object.keys(summary.retries).length === 0 ? 0 : formatCounts(summary.retries, ''));
  row('run time', `${(summary.elapsedMs / 1000).toFixed(1)} s`);
  lines.push('');
  lines.push(`${'latency (ms)'.padEnd(18)}${['count', 'p50', 'p90', 'p99', 'max'].map((h) => h.padStart(9)).join('')}`);
  const latency = (label: string, stats: LatencySummary) =>
    lines.push(`${label.padEnd(18)}${[stats.count, stats.p50, stats.p90, stats.p99, stats.max].map((v) => String(v).padStart(9)).join('')}`);
  latency('enroll', summary.enrollLatencyMs);
  latency('connect (claim)', summary.connectLatencyMs.claim);
  latency('connect (device)', summary.connectLatencyMs.device);
  if (summary.renewLatencyMs.count > 0) latency('renew', summary.renewLatencyMs);
  const failures = Object.entries(summary.failures).sort((a, b) => b[1].count - a[1].count);
  if (failures.length > 0) {
    lines.push('');
    lines.push('failures');
    for (const [code, failure] of failures) {
      lines.push(`  ${code} ×${failure.count} (${failure.stage}) e.g. ${failure.example}`);
      const hint = hints[code];
      if (hint !== undefined) lines.push(`    → ${hint}`);
    }
  }
  return lines.join('\n');
}

function formatCounts(counts: Readonly<Record<string, number>>, prefix: string): string {
  const entries = Object.entries(counts);
  if (entries.length === 0) return '';
  return prefix + entries.map(([code, n]) => `${code} ${n}`).join(', ');
}
