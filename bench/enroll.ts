/**
 * Enrollment benchmark: a real `fleetgate serve` child process, a claim made through the API, then layers
 * of load over MQTTS from this process, each measured for throughput, latency and CPU on both sides:
 *
 *   tls      TLS handshake with the claim certificate, nothing else
 *   connect  TLS + MQTT CONNECT/CONNACK (session admission) + DISCONNECT
 *   enroll   claim session + CSR over MQTT until the `accepted` reply      ← "enrollments/s"
 *   online   enroll, then a session with the new device certificate        (the whole first boot)
 *
 * Run: node --import tsx bench/enroll.ts [--devices 2000] [--concurrency 100] [--quick] [--profile]
 * bench/run.ts (the side-by-side suite) imports measureEnrollment for its `enroll_per_s`.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { apiRequest } from '../cli/api-client.ts';
import { generateKeyPair } from '../core/index.ts';
import { type FleetSummary, runFleet } from '../device-sim/index.ts';
import { type LoadResult, runMqttConnects, runTlsHandshakes } from './connection-load.ts';
import { startGatewayProcess } from './gateway-process.ts';
import { type CpuUse, cpuBetween, sampleCpu } from './process-cpu.ts';
import { type ProfileBreakdown, summarizeCpuProfile } from './profile-summary.ts';

export type EnrollPhase = 'tls' | 'connect' | 'enroll' | 'online';
export const enrollPhases: readonly EnrollPhase[] = ['tls', 'connect', 'enroll', 'online'];

export interface PhaseResult {
  readonly phase: string;
  readonly operations: number;
  readonly ok: number;
  readonly failed: number;
  readonly perSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number };
  readonly gateway: CpuUse & { readonly cpuMsPerOp: number; readonly mainThreadMsPerOp: number };
  readonly loadGenerator: CpuUse;
  readonly profile?: ProfileBreakdown;
  readonly detail?: unknown;
  /** 1-minute load average before and after: other processes on the machine skew every figure. */
  readonly loadAverage: readonly [number, number];
}

export interface EnrollBenchmarkOptions {
  /** A running gateway (this script starts `fleetgate serve`; bench/run.ts passes its own). */
  readonly gateway: { readonly mqttUrl: string; readonly apiUrl: string; readonly pid: number };
  readonly ca: string;
  readonly token: string;
  readonly devices: number;
  readonly concurrency: number;
  readonly warmup: number;
  readonly phases?: readonly EnrollPhase[];
  /** Serial prefix, so that several runs against one registry use fresh serials. */
  readonly prefix?: string;
  readonly log?: (line: string) => void;
}

/**
 * The enrollment layers against a running gateway, each measured for throughput, latency and CPU on both
 * sides; `windows` are the phases' times for slicing a --cpu-prof profile.
 */
export async function measureEnrollment(options: EnrollBenchmarkOptions): Promise<{ phases: PhaseResult[]; windows: { phase: string; fromUs: number; toUs: number }[] }> {
  const { gateway, ca, devices, concurrency, warmup } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const wanted = new Set(options.phases ?? enrollPhases);
  const prefix = options.prefix ?? '';
  const phases: PhaseResult[] = [];
  const windows: { phase: string; fromUs: number; toUs: number }[] = [];
  const created = await apiRequest<{ certificate: string; privateKey: string; claimId: string }>({ baseUrl: gateway.apiUrl, ca, token: options.token }, 'POST', '/v1/claims', { template: 'default' });
  if (created.status !== 201) throw new Error(`POST /v1/claims answered ${created.status}: ${JSON.stringify(created.body)}`);
  const claim = { cert: created.body.certificate, key: created.body.privateKey };
  const target = { url: gateway.mqttUrl, ca };

  log(`making ${warmup + 2 * devices} P-256 key pairs in advance (not timed)`);
  const keys = await Promise.all(Array.from({ length: warmup + 2 * devices }, () => generateKeyPair()));

  /** Runs one phase with CPU sampled on both sides around it. */
  const measure = async (phase: EnrollPhase, operations: number, work: () => Promise<{ ok: number; failed: number; elapsedMs: number; latencyMs: { p50: number; p99: number }; perSecond?: number; detail?: unknown }>) => {
    if (!wanted.has(phase)) return;
    log(`phase ${phase}: ${operations} operations, concurrency ${concurrency}`);
    const loadBefore = loadavg()[0] ?? 0;
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    const gatewayBefore = sampleCpu(gateway.pid);
    const selfBefore = sampleCpu(process.pid);
    const usageBefore = process.cpuUsage();
    const result = await work();
    const usage = process.cpuUsage(usageBefore);
    const selfAfter = sampleCpu(process.pid);
    const gatewayAfter = sampleCpu(gateway.pid);
    windows.push({ phase, fromUs, toUs: Number(process.hrtime.bigint() / 1000n) });
    const gatewayCpu = cpuBetween(gatewayBefore, gatewayAfter);
    const selfCpu = cpuBetween(selfBefore, selfAfter);
    const wall = selfAfter.at - selfBefore.at;
    const loadCpuSeconds = (usage.user + usage.system) / 1e6;
    const round = (value: number) => Math.round(value * 100) / 100;
    phases.push({
      phase,
      operations,
      ok: result.ok,
      failed: result.failed,
      perSecond: result.perSecond ?? round(result.ok / (result.elapsedMs / 1000)),
      latencyMs: { p50: result.latencyMs.p50, p99: result.latencyMs.p99 },
      gateway: {
        ...gatewayCpu,
        cpuMsPerOp: round((gatewayCpu.cpuSeconds * 1000) / Math.max(1, result.ok)),
        mainThreadMsPerOp: round(((gatewayAfter.mainThreadSeconds - gatewayBefore.mainThreadSeconds) * 1000) / Math.max(1, result.ok)),
      },
      loadGenerator: { cpuSeconds: round(loadCpuSeconds), cores: round(loadCpuSeconds / wall), mainThreadBusy: selfCpu.mainThreadBusy },
      ...(result.detail === undefined ? {} : { detail: result.detail }),
      loadAverage: [loadBefore, loadavg()[0] ?? 0],
    });
  };
  const fromLoad = (result: LoadResult) => ({ ...result, latencyMs: result.latencyMs });
  const fromFleet = (summary: FleetSummary, latency: 'enroll' | 'online') => ({
    ok: latency === 'enroll' ? summary.enrolled : summary.online,
    failed: summary.failed,
    elapsedMs: summary.elapsedMs,
    // Enrollments per second up to the last `accepted` reply; for the full boot, devices online per second.
    ...(latency === 'enroll' ? { perSecond: summary.enrollmentsPerSecond } : {}),
    latencyMs: summary.enrollLatencyMs,
    detail: { failures: summary.failures, retries: summary.retries, enrollLatencyMs: summary.enrollLatencyMs, connectLatencyMs: summary.connectLatencyMs },
  });
  const fleet = (serialPrefix: string, count: number, keyOffset: number, stopAfter: 'enrolled' | 'online') =>
    runFleet({
      count,
      concurrency,
      serialPrefix: prefix + serialPrefix,
      durationMs: 0,
      keyPairs: keys.slice(keyOffset, keyOffset + count),
      device: { target, claim, telemetryIntervalMs: 0, stopAfter, connectTimeoutMs: 30_000, replyTimeoutMs: 60_000 },
    });

  // JIT warm-up on both sides, and SQLite's page cache: not recorded.
  log(`warm-up: ${warmup} devices`);
  await fleet('warm-', warmup, 0, 'online');

  await measure('tls', devices, async () => fromLoad(await runTlsHandshakes({ ...target, credential: claim, count: devices, concurrency })));
  await measure('connect', devices, async () => fromLoad(await runMqttConnects({ ...target, credential: claim, count: devices, concurrency, serialPrefix: `${prefix}conn-` })));
  await measure('enroll', devices, async () => fromFleet(await fleet('enr-', devices, warmup, 'enrolled'), 'enroll'));
  await measure('online', devices, async () => {
    const summary = await fleet('onl-', devices, warmup + devices, 'online');
    return { ...fromFleet(summary, 'online'), latencyMs: summary.enrollLatencyMs };
  });
  return { phases, windows };
}


/** The command-line benchmark: its own `fleetgate serve`, every phase, a table and a JSON file. */
async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      devices: { type: 'string' },
      concurrency: { type: 'string' },
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const devices = Number(flags.devices ?? (flags.quick ? 200 : 2000));
  const concurrency = Number(flags.concurrency ?? (flags.quick ? 50 : 100));
  const warmup = flags.quick ? 20 : 200;
  if (!(Number.isInteger(devices) && devices > 0 && Number.isInteger(concurrency) && concurrency > 0)) {
    process.stderr.write('usage: node --import tsx bench/enroll.ts [--devices N] [--concurrency C] [--quick] [--profile] [--out FILE]\n');
    process.exit(2);
  }
  const out = flags.out ?? join(import.meta.dirname, flags.quick ? 'results-enroll.quick.json' : 'results-enroll.json');

  const log = (line: string) => process.stderr.write(line + '\n');
  const dataDir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-'));
  const profileDir = join(import.meta.dirname, 'profiles');
  if (flags.profile) mkdirSync(profileDir, { recursive: true });
  const profileStartedAt = Date.now();

  log(`starting fleetgate serve (data ${dataDir})`);
  const gateway = await startGatewayProcess({
    dataDir,
    // The per-claim limiter exists to slow down a leaked claim; it is not what this benchmark measures.
    env: { FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000000', FLEETGATE_LOG_LEVEL: 'warn' },
    nodeFlags: flags.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', '500'] : [],
  });
  let measured: Awaited<ReturnType<typeof measureEnrollment>>;
  try {
    const ca = readFileSync(join(dataDir, 'pki', 'ca.crt'), 'utf8');
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    measured = await measureEnrollment({ gateway, ca, token, devices, concurrency, warmup, log });
  } finally {
    await gateway.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const { phases, windows } = measured;

  if (flags.profile) {
    const file = readdirSync(profileDir)
      // CPU.<date>.<time>.<pid>.<thread>.<seq>: thread 0 is the main thread (1 is tsx's module loader).
      .filter((name) => name.endsWith('.cpuprofile') && name.includes(`.${gateway.pid}.0.`))
      .map((name) => join(profileDir, name))
      .filter((path) => statSync(path).mtimeMs >= profileStartedAt)
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
    if (file === undefined) log('no .cpuprofile was written');
    else {
      log(`profile: ${file}`);
      for (const window of windows) {
        const index = phases.findIndex((p) => p.phase === window.phase);
        const phase = phases[index];
        if (phase !== undefined) phases[index] = { ...phase, profile: summarizeCpuProfile(file, window) };
      }
    }
  }


  const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${process.platform} ${process.arch}` };
  const results = {
    benchmark: 'enroll',
    date: new Date().toISOString(),
    command: `node --import tsx bench/enroll.ts --devices ${devices} --concurrency ${concurrency}${flags.quick ? ' --quick' : ''}${flags.profile ? ' --profile' : ''}`,
    machine,
    settings: { devices, concurrency, warmup, keyPairsMadeInAdvance: true, enrollRatePerClaim: 1_000_000, logLevel: 'warn', gateway: 'fleetgate serve (child process, SQLite registry)' },
    phases,
  };
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n');

  const header = ['phase', 'ok', 'failed', 'per s', 'p50 ms', 'p99 ms', 'gw cores', 'gw main', 'gw ms/op', 'main ms/op', 'load cores', 'loadavg'];
  const rows = phases.map((p) => [
    p.phase,
    p.ok,
    p.failed,
    p.perSecond,
    p.latencyMs.p50,
    p.latencyMs.p99,
    p.gateway.cores,
    `${Math.round(p.gateway.mainThreadBusy * 100)}%`,
    p.gateway.cpuMsPerOp,
    p.gateway.mainThreadMsPerOp,
    p.loadGenerator.cores,
    p.loadAverage.map((value) => value.toFixed(1)).join('→'),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells: readonly unknown[]) => cells.map((c, i) => String(c).padStart(widths[i] ?? 0)).join('  ');
  process.stdout.write(`${machine.cpus} × ${machine.model}, Node ${machine.node}; ${devices} devices per phase, concurrency ${concurrency}\n`);
  process.stdout.write([line(header), ...rows.map(line)].join('\n') + '\n');
  for (const phase of phases) {
    if (phase.profile === undefined) continue;
    process.stdout.write(`\ngateway main thread, phase ${phase.phase} (${phase.profile.sampledMs} ms sampled, ${phase.profile.idleMs} ms idle):\n`);
    for (const entry of phase.profile.busy) process.stdout.write(`  ${String(Math.round(entry.share * 100)).padStart(3)}%  ${String(entry.ms).padStart(6)} ms  ${entry.category}\n`);
    process.stdout.write(`  top functions (self ms): ${phase.profile.topFunctions.slice(0, 6).map((f) => `${f.name} ${f.ms}`).join('; ')}\n`);
  }
  process.stdout.write(`\nwrote ${out}\n`);
}

if (resolve(process.argv[1] ?? '') === import.meta.filename) await main();
