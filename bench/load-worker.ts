/**
 * A load-generator process of the side-by-side suite (bench/run.ts starts it through load-worker-pool.ts,
 * pinned with taskset). It takes jobs over the IPC channel, runs them with mqtt-load.ts against whichever
 * broker the job names, and answers with the result and the CPU it used, so the suite can tell when the
 * loader, not the broker, was the limit.
 */
import { readFileSync } from 'node:fs';
import type { BackoffPolicy } from '../device-sim/index.ts';
import type { BenchCredentials } from './device-credentials.ts';
import { holdIdle, type IdleFleet, measureConnectRate, measureLatency, measureThroughput, type Target } from './mqtt-load.ts';

export type WorkerJob =
  | { kind: 'connect'; target: Target; devices: [number, number]; count: number; concurrency: number; resume: boolean }
  | { kind: 'throughput'; target: Target; devices: [number, number]; qos: 0 | 1; durationMs: number; payloadBytes: number; inflight: number }
  | { kind: 'latency'; target: Target; devices: [number, number]; qos: 0 | 1; ratePerSecond: number; durationMs: number; payloadBytes: number }
  | { kind: 'hold'; target: Target; devices: [number, number]; concurrency: number }
  | { kind: 'arm'; policy: BackoffPolicy }
  | { kind: 'settle'; timeoutMs: number }
  | { kind: 'release' };

export type WorkerReply = { ok: true; result: unknown; cpuSeconds: number; wallSeconds: number } | { ok: false; error: string };

const credentialsFile = process.argv[2];
if (credentialsFile === undefined || process.send === undefined) {
  process.stderr.write('load-worker.ts is started by bench/run.ts (IPC channel and credentials file required)\n');
  process.exit(2);
}
const credentials = JSON.parse(readFileSync(credentialsFile, 'utf8')) as BenchCredentials;
let fleet: IdleFleet | undefined;

async function run(job: WorkerJob): Promise<unknown> {
  switch (job.kind) {
    case 'connect':
      return measureConnectRate(job.target, credentials.devices.slice(...job.devices), job);
    case 'throughput':
      return measureThroughput(job.target, credentials.devices.slice(...job.devices), credentials.service, job);
    case 'latency':
      return measureLatency(job.target, credentials.devices.slice(...job.devices), credentials.service, job);
    case 'hold':
      fleet = await holdIdle(job.target, credentials.devices.slice(...job.devices), job.concurrency);
      return { connected: fleet.connected, failed: fleet.failed };
    case 'arm':
      fleet?.arm(job.policy);
      return null;
    case 'settle':
      return fleet?.whenSettled(job.timeoutMs) ?? null;
    case 'release':
      fleet?.close();
      fleet = undefined;
      return null;
  }
}

process.on('message', (job: WorkerJob) => {
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  run(job).then(
    (result) => {
      const cpu = process.cpuUsage(cpuBefore);
      process.send?.({ ok: true, result, cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds: (performance.now() - started) / 1000 } satisfies WorkerReply);
    },
    (error: unknown) => process.send?.({ ok: false, error: error instanceof Error ? error.message : String(error) } satisfies WorkerReply),
  );
});
process.on('disconnect', () => process.exit(0));
