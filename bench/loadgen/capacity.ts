/**
 * How much one core of a load generator drives: a private mTLS Mosquitto pinned to CPU 0, the generator pinned
 * to CPU 1, full and resumed connects, QoS 1 and QoS 0 throughput and an idle fleet, with the CPU of both
 * processes for each. Shows whether the generator or the broker is the limit.
 *
 *   node --import tsx bench/loadgen/capacity.ts [--dir /tmp/fgload-capacity] [--devices 200] [--hold 0] [--node]
 *
 * --skip-load runs only the idle fleet. --node repeats everything with the Node worker (bench/load-worker.ts) for comparison; --hold N adds an idle
 * fleet of N devices (needs N registered devices: --devices ≥ N; the first run creates them, later runs reuse).
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCLoadWorker } from '../c-loadgen.ts';
import { createBenchCredentials } from '../device-credentials.ts';
import { type LoadWorker, startLoadWorker } from '../load-worker-pool.ts';
import type { ConnectRateResult, Target, ThroughputResult } from '../mqtt-load.ts';
import { startMosquitto } from '../mosquitto-process.ts';
import { cpuBetween, sampleCpu } from '../process-cpu.ts';
import type { WorkerJob } from '../load-worker.ts';

const { values } = parseArgs({ options: { 'skip-load': { type: 'boolean', default: false }, dir: { type: 'string', default: '/tmp/fgload-capacity' }, devices: { type: 'string', default: '200' }, hold: { type: 'string', default: '0' }, node: { type: 'boolean', default: false } } });
const devices = Number(values.devices);
const hold = Number(values.hold);
const openFiles = Math.max(4096, hold * 2 + 1000);

const { file, credentials } = await createBenchCredentials({ dataDir: join(values.dir, 'data'), count: Math.max(devices, hold), prefix: 'cap-', serviceName: 'cap-backend', onProgress: (n) => console.error(`${n} devices registered`) });
const mosquitto = await startMosquitto({ dir: join(values.dir, 'mosquitto'), tls: credentials.pki, serviceNames: [credentials.service.id], pinning: { cpus: '0', openFiles } });
const target: Target = { host: mosquitto.host, port: mosquitto.port, ca: credentials.ca };

async function measure(name: string, worker: LoadWorker, job: WorkerJob, figure: (result: never) => string): Promise<void> {
  const brokerBefore = sampleCpu(mosquitto.pid);
  const loaderBefore = sampleCpu(worker.pid);
  const { result, cpuSeconds, wallSeconds } = await worker.run<never>(job);
  const broker = cpuBetween(brokerBefore, sampleCpu(mosquitto.pid));
  const loader = cpuBetween(loaderBefore, sampleCpu(worker.pid));
  console.log(`${name.padEnd(34)} ${figure(result).padEnd(44)} generator ${(cpuSeconds / wallSeconds).toFixed(2)} cores (/proc ${loader.cores.toFixed(2)}), mosquitto ${broker.cores.toFixed(2)} cores`);
}

const connects = (r: ConnectRateResult) => `${Math.round(r.perSecond)} conn/s (${r.ok} ok, ${r.failed} failed, ${r.resumed} resumed, p50 ${r.latencyMs.p50} ms)`;
const messages = (r: ThroughputResult) => `${Math.round(r.perSecond)} msg/s delivered (${r.delivered}/${r.sent})`;

async function scenarios(label: string, worker: LoadWorker): Promise<void> {
  const range: [number, number] = [0, devices];
  if (values['skip-load']) return holdAndStorm(label, worker);
  await worker.run({ kind: 'connect', target, devices: [0, 50], count: 200, concurrency: 20, resume: false }); // warm-up
  await measure(`${label} mtls connect full`, worker, { kind: 'connect', target, devices: range, count: 3000, concurrency: 50, resume: false }, connects);
  await measure(`${label} mtls connect resumed`, worker, { kind: 'connect', target, devices: range, count: 3000, concurrency: 50, resume: true }, connects);
  await measure(`${label} qos1 throughput`, worker, { kind: 'throughput', target, devices: [0, Math.min(devices, 50)], qos: 1, durationMs: 5000, payloadBytes: 64, inflight: 16 }, messages);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await measure(`${label} qos0 throughput`, worker, { kind: 'throughput', target, devices: [0, Math.min(devices, 50)], qos: 0, durationMs: 5000, payloadBytes: 64, inflight: 1 }, messages);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await holdAndStorm(label, worker);
}

async function holdAndStorm(label: string, worker: LoadWorker): Promise<void> {
  if (hold > 0) {
    await measure(`${label} hold ${hold} idle`, worker, { kind: 'hold', target, devices: [0, hold], concurrency: 100 }, (r: { connected: number; failed: number }) => `${r.connected} connected, ${r.failed} failed`);
    await worker.run({ kind: 'arm', policy: { baseMs: 500, capMs: 10_000, maxAttempts: 20 } });
    const { downMs } = await mosquitto.restart();
    await measure(`${label} reconnect storm (${Math.round(downMs)} ms down)`, worker, { kind: 'settle', timeoutMs: 60_000 }, (r: { back: number; failed: number; lastBackAt: number; firstDropAt: number; refusals: Record<string, number> }) => `${r.back} back, ${r.failed} failed in ${((r.lastBackAt - r.firstDropAt) / 1000).toFixed(1)} s; retried ${JSON.stringify(r.refusals)}`);
    await worker.run({ kind: 'release' });
  }
}

try {
  const c = startCLoadWorker(credentials, { cpus: '1', openFiles });
  try {
    await scenarios('C', c);
  } finally {
    await c.stop();
  }
  if (values.node) {
    const node = startLoadWorker(file, { cpus: '1', openFiles });
    try {
      await scenarios('Node', node);
    } finally {
      await node.stop();
    }
  }
} finally {
  await mosquitto.stop();
}
