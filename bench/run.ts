/**
 * The side-by-side suite (README "Benchmarks"): fleetgate and a private Eclipse Mosquitto, configured alike (mTLS with
 * the same ECDSA P-256 certificates, CN as identity, per-device topic ACLs), measured on this machine in one
 * run by the same load generator (child processes with raw MQTT frames). Each scenario alternates the two
 * brokers and repeats; the table shows medians and the ratio fleetgate/Mosquitto, and bench/results.json
 * keeps every run with the loader's and the broker's CPU.
 *
 * Run: npm run bench [-- --quick] [--mode serve|cluster] [--no-pin] [--only connect,throughput,latency,fleetgate,idle] [--out FILE]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatMetricsTable, type Metric, missingMetrics, type ResultsDocument } from './bench-report.ts';
import type { BrokerUnderTest, Pinning } from './broker-under-test.ts';
import { createBenchCredentials } from './device-credentials.ts';
import { assertModeAvailable, type FleetgateMode, fleetgateModes, FleetgateModeUnavailable, type FleetgateUnderTest, startFleetgate } from './fleetgate-launcher.ts';
import { type LoadWorker, startLoadWorker } from './load-worker-pool.ts';
import { findMosquitto, startMosquitto } from './mosquitto-process.ts';
import { connectScenarios, fleetgateOnlyScenarios, idleFleetScenarios, latencyScenario, type SuiteSettings, throughputScenarios, warmUp } from './suite-scenarios.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    mode: { type: 'string', default: 'serve' },
    'no-pin': { type: 'boolean', default: false },
    out: { type: 'string' },
    /** Comma-separated scenario groups, for working on one of them; the full document needs them all. */
    only: { type: 'string' },
  },
});
const startedAt = performance.now();
const progress = (line: string) => process.stderr.write(`[${((performance.now() - startedAt) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);

const mode = flags.mode as FleetgateMode;
if (!(fleetgateModes as readonly string[]).includes(mode)) {
  process.stderr.write(`--mode must be one of ${fleetgateModes.join(', ')}\n`);
  process.exit(2);
}
try {
  assertModeAvailable(mode);
} catch (error) {
  if (!(error instanceof FleetgateModeUnavailable)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(2);
}
const mosquittoFound = findMosquitto();
if ('missing' in mosquittoFound) {
  process.stderr.write(`${mosquittoFound.missing}\n`);
  process.exit(1);
}

const scenarioGroups = { connect: connectScenarios, throughput: throughputScenarios, latency: latencyScenario, fleetgate: fleetgateOnlyScenarios, idle: idleFleetScenarios };
const only = flags.only?.split(',');
const unknownGroup = only?.find((group) => !(group in scenarioGroups));
if (unknownGroup !== undefined) {
  process.stderr.write(`--only takes ${Object.keys(scenarioGroups).join(',')}; got "${unknownGroup}"\n`);
  process.exit(2);
}
const quick = flags.quick;
const settings: SuiteSettings = quick
  ? {
      reps: 2,
      slowReps: 1,
      concurrency: 50,
      connectDevices: 200,
      connectCount: 400,
      publishers: 20,
      throughputMs: 1500,
      payloadBytes: 64,
      qos1Inflight: 10,
      latencyRatePerSecond: 1000,
      latencyMs: 2000,
      idleConnections: 1000,
      stormBackoff: { baseMs: 1000, capMs: 10_000, maxAttempts: 10 },
      stormTimeoutMs: 60_000,
      enrollDevices: 100,
      enrollWarmup: 20,
      revokeDevices: 50,
      policyIterations: 50_000,
    }
  : {
      reps: 4,
      slowReps: 3,
      concurrency: 50,
      connectDevices: 1000,
      connectCount: 3000,
      publishers: 50,
      throughputMs: 8000,
      payloadBytes: 64,
      qos1Inflight: 10,
      latencyRatePerSecond: 2000,
      latencyMs: 10_000,
      idleConnections: 10_000,
      stormBackoff: { baseMs: 1000, capMs: 30_000, maxAttempts: 12 },
      stormTimeoutMs: 300_000,
      enrollDevices: 1000,
      enrollWarmup: 100,
      revokeDevices: 300,
      policyIterations: 500_000,
    };
// One load process holds at most 2,500 idle TLS sockets; more are spread over several.
const workerCount = Math.max(1, Math.ceil(settings.idleConnections / 2500));
const pin = !flags['no-pin'] && cpus().length >= 2;
// The broker on CPU 0, everything that makes load (workers and this process) on CPU 1.
const brokerPinning: Pinning = { ...(pin ? { cpus: '0' } : {}), openFiles: 65_536 };
const loaderPinning: Pinning = { ...(pin ? { cpus: '1' } : {}), openFiles: 65_536 };
if (pin) execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });

const dir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-suite-'));
const command = `npm run bench${quick ? ' -- --quick' : ''}${mode !== 'serve' ? ` --mode ${mode}` : ''}${flags['no-pin'] ? ' --no-pin' : ''}`;
const loadBefore = loadavg();
let fleetgate: FleetgateUnderTest | undefined;
let mosquitto: BrokerUnderTest | undefined;
const workers: LoadWorker[] = [];
const metrics: Metric[] = [];
let exitCode = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping the brokers and load workers`);
    void cleanUp().finally(() => process.exit(130));
  });
}
try {
  progress(`${quick ? 'quick' : 'full'} suite, fleetgate --mode ${mode} vs Mosquitto ${mosquittoFound.version}; work dir ${dir}`);
  progress(`creating ${settings.idleConnections} device certificates and a service identity (fleetgate's device CA, as \`device create\`/\`service create\`)`);
  const dataDir = join(dir, 'fleetgate-data');
  const { file, credentials } = await createBenchCredentials({
    dataDir,
    count: Math.max(settings.idleConnections, settings.connectDevices, settings.publishers),
    prefix: 'bench-',
    serviceName: 'bench-subscriber',
    onProgress: (done) => progress(`  ${done} devices`),
  });
  progress(`starting fleetgate (${mode}) and Mosquitto${pin ? ', both pinned to CPU 0; load on CPU 1' : ', unpinned'}`);
  fleetgate = await startFleetgate({ mode, dataDir, pinning: brokerPinning });
  mosquitto = await startMosquitto({ dir: join(dir, 'mosquitto'), tls: credentials.pki, serviceNames: [credentials.service.id], pinning: brokerPinning });
  progress(`fleetgate ${fleetgate.mqttUrl} (pid ${fleetgate.pid}), mosquitto mqtts://127.0.0.1:${mosquitto.port} (pid ${mosquitto.pid}); ${workerCount} load worker(s)`);
  for (let i = 0; i < workerCount; i++) workers.push(startLoadWorker(file, loaderPinning));

  // JIT and caches on both sides before anything is recorded.
  for (const broker of [fleetgate, mosquitto]) await warmUp({ workers, credentials }, broker);
  progress('warm-up done');

  const context = { fleetgate, mosquitto, workers, credentials, settings, progress };
  // The idle fleet goes last: it restarts both brokers (cold JIT afterwards).
  for (const [group, scenarios] of Object.entries(scenarioGroups)) {
    if (only === undefined || only.includes(group)) metrics.push(...(await scenarios(context)));
  }
} catch (error) {
  exitCode = 1;
  progress(`suite failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
} finally {
  await cleanUp();
}

/** Stops everything this run started; also on Ctrl-C, so no broker outlives the suite. */
async function cleanUp(): Promise<void> {
  await Promise.allSettled(workers.map((worker) => worker.stop()));
  await Promise.allSettled([fleetgate?.stop(), mosquitto?.stop()]);
  rmSync(dir, { recursive: true, force: true });
}

const aedesVersion = (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'node_modules', 'aedes', 'package.json'), 'utf8')) as { version: string }).version;
const machine = {
  cpuModel: cpus()[0]?.model ?? 'unknown',
  cpus: cpus().length,
  memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  kernel: release(),
  node: process.version,
  openssl: process.versions.openssl,
  mosquitto: mosquittoFound.version,
  aedes: aedesVersion,
  loadAverageBefore: loadBefore.map((v) => Math.round(v * 100) / 100),
  loadAverageAfter: loadavg().map((v) => Math.round(v * 100) / 100),
};
const document: ResultsDocument = {
  machine,
  date: new Date().toISOString(),
  command,
  conditions: [
    `fleetgate --mode ${mode} (${mode === 'serve' ? 'one `fleetgate serve` process, SQLite registry, log level warn' : 'cluster'}); Mosquitto ${mosquittoFound.version} with require_certificate, use_identity_as_username, acl_file (pattern readwrite devices/%u/#), tls_version tlsv1.2, same server certificate and CA`,
    pin ? 'brokers pinned to CPU 0 (taskset), load workers and the orchestrator to CPU 1' : 'no CPU pinning',
    `${quick ? 'quick' : 'full'}: ${settings.reps} repetitions (${settings.slowReps} for the idle fleet, reconnect storm, enrollment and revocation), brokers alternated, medians reported`,
    'load generator: raw MQTT 3.1.1 frames over node:tls (bench/mqtt-wire.ts), the same code for both brokers, in child processes; its CPU is in each metric detail',
    'shared machine: other people run tests at the same time; figures are provisional',
  ],
  metrics,
};
const missing = only === undefined ? missingMetrics(document) : [];
if (missing.length > 0) {
  exitCode = 1;
  progress(`missing metrics: ${missing.join(', ')}`);
}
const out = flags.out ?? join(import.meta.dirname, 'results.json');
if (metrics.length > 0) writeFileSync(out, JSON.stringify(document, null, 2) + '\n');
process.stdout.write(`\n${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}; Node ${machine.node}, Mosquitto ${machine.mosquitto}, aedes ${machine.aedes}\n`);
process.stdout.write(`${document.date}  ${command}\n\n`);
process.stdout.write(formatMetricsTable(metrics) + '\n');
process.stdout.write(`\nratio = fleetgate / mosquitto (higher is better for rates, lower for ms, KiB and s)${metrics.length > 0 ? `; wrote ${out}` : ''}\n`);
progress(`done in ${((performance.now() - startedAt) / 1000).toFixed(0)} s`);
process.exit(exitCode);
