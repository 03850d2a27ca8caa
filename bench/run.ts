/**
 * The side-by-side suite (README "Benchmarks"; issue 16): Mosquitto, fleetgate and a minimal aedes broker
 * (bench/minimal-aedes-broker.ts), the Node ones on each chosen Node runtime (bench/node-runtimes.ts), all
 * configured alike (mTLS with the same ECDSA P-256 certificates, CN as identity, per-device topic ACLs) and
 * measured on this machine in one run by the same load generator: the C one (bench/c-loadgen.ts, one epoll
 * thread) or, with --loader node, the Node workers (bench/load-worker-pool.ts). Each scenario rotates the
 * brokers' order per repetition; the table shows medians, every ratio to Mosquitto and fleetgate ÷ minimal
 * aedes, and bench/results.json keeps every run with the generator's and the broker's CPU.
 *
 * Run: npm run bench [-- --quick] [--brokers mosquitto,fleetgate,aedes] [--node 24,20] [--loader c|node]
 *      [--mode serve|cluster|cluster-1] [--no-pin] [--only connect,throughput,latency,fleetgate,idle] [--out FILE]
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatCpuTable, formatMetricsTable, formatNotes, type Metric, missingMetrics, type ResultsDocument } from './bench-report.ts';
import { type BrokerKind, brokerKinds, type BrokerUnderTest, type Pinning } from './broker-under-test.ts';
import { buildLoadgen, startCLoadWorker } from './c-loadgen.ts';
import { createBenchCredentials } from './device-credentials.ts';
import { assertModeAvailable, type FleetgateMode, fleetgateModes, FleetgateModeUnavailable, type FleetgateUnderTest, startFleetgate } from './fleetgate-launcher.ts';
import { type LoadWorker, startLoadWorker } from './load-worker-pool.ts';
import { startMinimalAedes } from './minimal-aedes-process.ts';
import { findMosquitto, startMosquitto } from './mosquitto-process.ts';
import { type NodeRuntime, prepareRuntime, RuntimeUnavailable } from './node-runtimes.ts';
import { connectScenarios, fleetgateOnlyScenarios, idleFleetScenarios, latencyScenario, type SuiteSettings, throughputScenarios, warmUp } from './suite-scenarios.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    mode: { type: 'string', default: 'serve' },
    'no-pin': { type: 'boolean', default: false },
    out: { type: 'string' },
    /** Comma-separated scenario groups, for working on one of them; the full document needs them all. */
    only: { type: 'string' },
    /** Which brokers: mosquitto, fleetgate, aedes (the minimal one). Ratios need mosquitto. */
    brokers: { type: 'string', default: brokerKinds.join(',') },
    /** Node majors the Node brokers run on; the machine's own and any other fetched from npm (node-runtimes.ts). */
    node: { type: 'string', default: '24,20' },
    /** c: bench/c-loadgen.ts (one process, one epoll thread); node: the Node load workers. */
    loader: { type: 'string', default: 'c' },
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
const fail = (message: string, code = 2): never => {
  process.stderr.write(`${message}\n`);
  process.exit(code);
};
const kinds = (flags.brokers ?? '').split(',').filter(Boolean);
const unknownKind = kinds.find((kind) => !(brokerKinds as readonly string[]).includes(kind));
if (unknownKind !== undefined || kinds.length === 0) fail(`--brokers takes ${brokerKinds.join(',')}; got "${flags.brokers}"`);
const wants = (kind: BrokerKind) => kinds.includes(kind);
const majors = [...new Set((flags.node ?? '').split(',').filter(Boolean).map(Number))];
if (majors.length === 0 || majors.some((major) => !Number.isInteger(major) || major < 20)) fail(`--node takes Node majors, e.g. 24,20; got "${flags.node}"`);
if (flags.loader !== 'c' && flags.loader !== 'node') fail(`--loader takes c or node; got "${flags.loader}"`);
// Two clusters would share the bench Redis database and cluster name.
if (mode !== 'serve' && wants('fleetgate') && majors.length > 1) fail(`--mode ${mode} runs one fleetgate: choose one runtime with --node`);
const mosquittoFound = wants('mosquitto') ? findMosquitto() : undefined;
if (mosquittoFound !== undefined && 'missing' in mosquittoFound) fail(mosquittoFound.missing, 1);
const mosquittoVersion = mosquittoFound !== undefined && 'version' in mosquittoFound ? mosquittoFound.version : undefined;

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
      reps: 3,
      slowReps: 1,
      concurrency: 50,
      connectDevices: 200,
      connectCount: 200,
      publishers: 10,
      throughputMs: 1000,
      payloadBytes: 64,
      qos1Inflight: 20,
      latencyRatePerSecond: 1000,
      latencyMs: 1500,
      idleConnections: 500,
      stormBackoff: { baseMs: 500, capMs: 5000, maxAttempts: 10 },
      stormTimeoutMs: 60_000,
      enrollDevices: 50,
      enrollWarmup: 10,
      revokeDevices: 30,
      policyIterations: 50_000,
      warmUpConnects: 100,
    }
  : {
      // Issue 16's shapes: 10 publishers with 20 in flight each, latency at 1,000 msg/s; 3 repetitions of
      // five brokers keep the full run near 30 minutes on 2 cores (27 min measured).
      reps: 3,
      slowReps: 3,
      concurrency: 50,
      connectDevices: 1000,
      connectCount: 2000,
      publishers: 10,
      throughputMs: 5000,
      payloadBytes: 64,
      qos1Inflight: 20,
      latencyRatePerSecond: 1000,
      latencyMs: 8000,
      idleConnections: 10_000,
      stormBackoff: { baseMs: 1000, capMs: 30_000, maxAttempts: 12 },
      stormTimeoutMs: 300_000,
      enrollDevices: 500,
      enrollWarmup: 100,
      revokeDevices: 200,
      policyIterations: 500_000,
      warmUpConnects: 200,
    };
/** What --quick gives up for its 5 minutes, printed with its table. */
const quickLeavesOut = `quick: ${settings.reps} repetitions but the idle fleet, reconnect storm, enrollment and revocation run once (no median); ${settings.idleConnections} idle connections (full: 10,000), ${settings.connectCount} connections per connect measurement (2,000), ${settings.throughputMs / 1000} s throughput and ${settings.latencyMs / 1000} s latency windows (5 s, 8 s)`;
// The C generator is one epoll thread holding 10,000+ connections; a Node worker holds at most 2,500 idle TLS sockets.
const workerCount = flags.loader === 'c' ? 1 : Math.max(1, Math.ceil(settings.idleConnections / 2500));
const pin = !flags['no-pin'] && cpus().length >= 2;
// The brokers on CPU 0, everything that makes load (the generator and this process) on CPU 1.
const brokerPinning: Pinning = { ...(pin ? { cpus: '0' } : {}), openFiles: 65_536 };
const loaderPinning: Pinning = { ...(pin ? { cpus: '1' } : {}), openFiles: 65_536 };
if (pin) execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });

const dir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-suite-'));
const command = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
const loadBefore = loadavg();
const brokers: BrokerUnderTest[] = [];
const runtimes: NodeRuntime[] = [];
const workers: LoadWorker[] = [];
const metrics: Metric[] = [];
let exitCode = 0;
let loaderDescription = 'Node load workers (bench/load-worker.ts)';
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping the brokers and load workers`);
    void cleanUp().finally(() => process.exit(130));
  });
}
try {
  progress(`${quick ? 'quick' : 'full'} suite: ${kinds.join(', ')}${wants('fleetgate') || wants('aedes') ? ` on Node ${majors.join(', ')}` : ''}${wants('fleetgate') ? `, fleetgate --mode ${mode}` : ''}, ${flags.loader} load generator; work dir ${dir}`);
  if (wants('fleetgate') || wants('aedes')) for (const major of majors) runtimes.push(prepareRuntime(major, progress));
  for (const runtime of runtimes) progress(`${runtime.label}: ${runtime.nodeBinary} ${runtime.version}, OpenSSL ${runtime.openssl}${runtime.fleetgateRoot.includes('.build') ? `, fleetgate from ${runtime.fleetgateRoot}` : ''}`);
  if (flags.loader === 'c') {
    const binary = await buildLoadgen();
    loaderDescription = `C load generator (bench/c-loadgen.ts: ${binary}), one process`;
  }
  progress(`creating ${settings.idleConnections} device certificates and a service identity (fleetgate's device CA, as \`device create\`/\`service create\`)`);
  const dataDir = join(dir, 'fleetgate-data');
  const { file, credentials } = await createBenchCredentials({
    dataDir,
    count: Math.max(settings.idleConnections, settings.connectDevices, settings.publishers),
    prefix: 'bench-',
    serviceName: 'bench-subscriber',
    onProgress: (done) => progress(`  ${done} devices`),
  });
  progress(`starting the brokers${pin ? ', all pinned to CPU 0; load on CPU 1' : ', unpinned'}`);
  if (wants('mosquitto')) brokers.push(await startMosquitto({ dir: join(dir, 'mosquitto'), tls: credentials.pki, serviceNames: [credentials.service.id], pinning: brokerPinning }));
  for (const runtime of wants('fleetgate') ? runtimes : []) {
    // Each fleetgate its own copy of the data directory: two SQLite writers would measure each other.
    const ownData = `${dataDir}-${runtime.label}`;
    cpSync(dataDir, ownData, { recursive: true });
    brokers.push(await startFleetgate({ mode, dataDir: ownData, pinning: brokerPinning, runtime, name: `fleetgate-${runtime.label}` }));
  }
  for (const runtime of wants('aedes') ? runtimes : []) {
    brokers.push(await startMinimalAedes({ name: `aedes-${runtime.label}`, runtime, tls: credentials.pki, serviceNames: [credentials.service.id], pinning: brokerPinning }));
  }
  for (const broker of brokers) progress(`  ${broker.name.padEnd(16)} mqtts://${broker.host}:${broker.port} (pid ${broker.pid}${broker.runtime ? `, ${broker.runtime}` : ''})`);
  for (let i = 0; i < workerCount; i++) workers.push(flags.loader === 'c' ? startCLoadWorker(file, loaderPinning) : startLoadWorker(file, loaderPinning));

  // JIT and caches on every side before anything is recorded.
  for (const broker of brokers) await warmUp({ workers, credentials, settings }, broker);
  progress('warm-up done');

  const fleetgate = brokers.find((broker): broker is FleetgateUnderTest => broker.kind === 'fleetgate');
  const context = { brokers, fleetgate, workers, credentials, settings, progress };
  // The idle fleet goes last: it restarts every broker (cold JIT afterwards).
  for (const [group, scenarios] of Object.entries(scenarioGroups)) {
    if (only === undefined || only.includes(group)) metrics.push(...(await scenarios(context)));
  }
} catch (error) {
  exitCode = 1;
  if (error instanceof RuntimeUnavailable) progress(error.message);
  else progress(`suite failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
} finally {
  await cleanUp();
}

/** Stops everything this run started; also on Ctrl-C, so no broker outlives the suite. */
async function cleanUp(): Promise<void> {
  await Promise.allSettled(workers.map((worker) => worker.stop()));
  await Promise.allSettled(brokers.map((broker) => broker.stop()));
  rmSync(dir, { recursive: true, force: true });
}

const aedesVersion = (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'node_modules', 'aedes', 'package.json'), 'utf8')) as { version: string }).version;
const machine = {
  cpuModel: cpus()[0]?.model ?? 'unknown',
  cpus: cpus().length,
  memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  kernel: release(),
  orchestratorNode: process.version,
  mosquitto: mosquittoVersion ?? null,
  aedes: aedesVersion,
  loadAverageBefore: loadBefore.map((v) => Math.round(v * 100) / 100),
  loadAverageAfter: loadavg().map((v) => Math.round(v * 100) / 100),
};
const document: ResultsDocument = {
  machine,
  runtimes: Object.fromEntries(runtimes.map((runtime) => [runtime.label, { node: runtime.version, openssl: runtime.openssl }])),
  brokers: brokers.map((broker) => broker.name),
  date: new Date().toISOString(),
  command,
  conditions: [
    `fleetgate --mode ${mode} (${mode === 'serve' ? 'one `fleetgate serve` process, SQLite registry (its own copy per runtime), log level warn' : 'cluster'}); Mosquitto ${mosquittoVersion ?? '(not run)'} with require_certificate, use_identity_as_username, acl_file (pattern readwrite devices/%u/#), tls_version tlsv1.2; minimal aedes ${aedesVersion} (bench/minimal-aedes-broker.ts: node:tls mTLS, client id = CN, devices/<CN>/# only, the service may subscribe devices/#); the same server certificate and CA for all`,
    pin ? 'brokers pinned to CPU 0 (taskset), the load generator and the orchestrator to CPU 1' : 'no CPU pinning',
    `${quick ? 'quick' : 'full'}: ${settings.reps} repetitions (${settings.slowReps} for the idle fleet, reconnect storm, enrollment and revocation), broker order rotated each repetition, medians reported`,
    `load generator: ${loaderDescription}, the same for every broker; its CPU and the broker's are in each metric. A metric where it exceeded 90 % of its core in any run has no ratios (generator-bound)`,
    'ratios: X ÷ Mosquitto from the same run; versusAedes: fleetgate ÷ minimal aedes on the same Node',
    'fleetgate-only metrics ran against the first fleetgate; policy_check_ns in the orchestrator process',
    ...(quick ? [quickLeavesOut] : []),
    'shared machine: other people run tests at the same time; figures are provisional',
  ],
  metrics,
};
const missing = only === undefined && wants('fleetgate') && wants('mosquitto') ? missingMetrics(document) : [];
if (missing.length > 0) {
  exitCode = 1;
  progress(`missing metrics: ${missing.join(', ')}`);
}
const out = flags.out ?? join(import.meta.dirname, 'results.json');
if (metrics.length > 0) writeFileSync(out, JSON.stringify(document, null, 2) + '\n');
process.stdout.write(`\n${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}; Mosquitto ${machine.mosquitto ?? '-'}, aedes ${machine.aedes}\n`);
for (const runtime of runtimes) process.stdout.write(`${runtime.label}: Node ${runtime.version}, OpenSSL ${runtime.openssl}\n`);
process.stdout.write(`${document.date}  ${command}\n\n`);
process.stdout.write(formatMetricsTable(metrics) + '\n\n');
process.stdout.write(formatNotes(metrics) + '\n\n');
process.stdout.write(formatCpuTable(metrics) + '\n');
process.stdout.write(`\n(×) = broker ÷ mosquitto in this run (higher is better for rates, lower for ms, KiB and s); fleetgate ÷ aedes on the same Node; gen-bound: the generator exceeded 90 % of its core in some run of the metric, so no ratio\n`);
if (quick) process.stdout.write(`${quickLeavesOut}\n`);
process.stdout.write(`${metrics.length > 0 ? `wrote ${out}\n` : ''}`);
progress(`done in ${((performance.now() - startedAt) / 1000).toFixed(0)} s`);
process.exit(exitCode);
