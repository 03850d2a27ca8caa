import { type BackoffPolicy } from '../device-sim/index.ts';
import { type BrokerRuns, generatorBoundCores, type Metric, metric } from './bench-report.ts';
import { type BrokerUnderTest, rssKib } from './broker-under-test.ts';
import { type EventLoopDelay, readEventLoopDelay } from './event-loop-scrape.ts';
import type { BenchCredentials } from './device-credentials.ts';
import { measureEnrollment } from './enroll.ts';
import type { FleetgateUnderTest } from './fleetgate-launcher.ts';
import type { LoadWorker } from './load-worker-pool.ts';
import type { ConnectRateResult, IdleFleet, LatencyResult, Target, ThroughputResult } from './mqtt-load.ts';
import { measurePolicyCheckNs } from './policy-check.ts';
import { cpuBetween, type CpuSample, sampleCpu } from './process-cpu.ts';
import { measureRevocation } from './revoke.ts';

/** Sizes of one suite run (`--quick` or full); see bench/run.ts. */
export interface SuiteSettings {
  readonly reps: number;
  /** Repetitions of the slow scenarios (idle fleet + reconnect storm). */
  readonly slowReps: number;
  readonly concurrency: number;
  /** Distinct devices the connect scenarios cycle through, and connections per measurement. */
  readonly connectDevices: number;
  readonly connectCount: number;
  readonly publishers: number;
  readonly throughputMs: number;
  readonly payloadBytes: number;
  /** Unacknowledged QoS 1 PUBLISHes per publisher. */
  readonly qos1Inflight: number;
  readonly latencyRatePerSecond: number;
  readonly latencyMs: number;
  readonly idleConnections: number;
  readonly stormBackoff: BackoffPolicy;
  readonly stormTimeoutMs: number;
  readonly enrollDevices: number;
  readonly enrollWarmup: number;
  readonly revokeDevices: number;
  readonly policyIterations: number;
  /** Connections that warm a broker up (JIT, caches) at the start and after each restart. */
  readonly warmUpConnects: number;
}

export interface SuiteContext {
  /** Every broker under test, Mosquitto first; alternated (rotated) per repetition. */
  readonly brokers: readonly BrokerUnderTest[];
  /** The fleetgate that runs the fleetgate-only scenarios (enrollment, revocation); undefined if none was chosen. */
  readonly fleetgate: FleetgateUnderTest | undefined;
  /** Load workers; the first runs every scenario but the idle fleet, which is spread over all of them. */
  readonly workers: readonly LoadWorker[];
  readonly credentials: BenchCredentials;
  readonly settings: SuiteSettings;
  progress(line: string): void;
}

interface Observation {
  readonly value: number | null;
  /** Load generator CPU, in cores (1 = one core saturated), over the measured window. */
  readonly loaderCores: number | null;
  /** Broker CPU, in cores, over the same window (all its threads). */
  readonly brokerCores?: number;
  readonly detail?: Record<string, unknown>;
}

type Runs = Record<string, Observation[]>;
const emptyRuns = (context: SuiteContext): Runs => Object.fromEntries(context.brokers.map((broker) => [broker.name, []]));

const targetOf = (broker: BrokerUnderTest, ca: string): Target => ({ host: broker.host, port: broker.port, ca });
const r2 = (value: number) => Math.round(value * 100) / 100;

/** Repeats `run` per broker, rotating which goes first each repetition, so drift on a shared machine hits all alike. */
async function alternate(context: SuiteContext, name: string, reps: number, run: (broker: BrokerUnderTest) => Promise<Observation>, format: (o: Observation) => string): Promise<Runs> {
  const runs = emptyRuns(context);
  const { brokers } = context;
  for (let rep = 0; rep < reps; rep++) {
    const order = brokers.map((_, i) => brokers[(i + rep) % brokers.length] as BrokerUnderTest);
    for (const broker of order) {
      if (!isAlive(broker.pid)) {
        // It died after its previous run (e.g. while working off a backlog): start a fresh one.
        context.progress(`${name}: ${broker.name} is not running (it died after its last run; see its stderr above); restarting it`);
        const previous = runs[broker.name]?.pop();
        if (previous !== undefined) runs[broker.name]?.push({ ...previous, detail: { ...previous.detail, brokerDiedAfter: true } });
        await restartWarm(context, broker);
      }
      const pid = broker.pid;
      const before = cpuSampleOf(pid);
      let observation: Observation;
      try {
        observation = await run(broker);
      } catch (error) {
        observation = { value: null, loaderCores: null, detail: { error: error instanceof Error ? error.message : String(error) } };
      }
      if (!isAlive(pid) && broker.pid === pid) {
        // The broker died under load (its stderr was printed): a null run, and a fresh broker for the next one.
        observation = { ...observation, value: null, detail: { ...observation.detail, brokerDied: true } };
        context.progress(`${name}: ${broker.name} died during the run; restarting it`);
        await restartWarm(context, broker);
      }
      // The next run must not inherit this one's backlog (a QoS 0 flood leaves plenty in socket buffers).
      await waitForQuiet(broker, 5000);
      const after = cpuSampleOf(pid);
      // Unknown when the broker died before the second look.
      const brokerCores = observation.brokerCores ?? (before && after ? cpuBetween(before, after).cores : undefined);
      const complete: Observation = { ...observation, ...(brokerCores === undefined ? {} : { brokerCores }) };
      runs[broker.name]?.push(complete);
      const loader = observation.loaderCores === null ? '' : `, generator ${Math.round(observation.loaderCores * 100)}% CPU${observation.loaderCores > generatorBoundCores ? ' (generator-bound: lower bound)' : ''}`;
      context.progress(`${name} rep ${rep + 1}/${reps} ${broker.name.padEnd(16)} ${format(complete)} (broker ${brokerCores === undefined ? '?' : brokerCores.toFixed(2)} cores${loader})`);
    }
  }
  return runs;
}

/** Medians and ratios (bench-report.ts) with every run's value, generator and broker CPU, and details. */
function summarize(name: string, unit: string, runs: Runs, note?: string): Metric {
  const byBroker: Record<string, BrokerRuns> = {};
  const details: Record<string, unknown> = {};
  for (const [broker, observations] of Object.entries(runs)) {
    byBroker[broker] = { runs: observations.map((o) => o.value), generatorCores: observations.map((o) => o.loaderCores), brokerCores: observations.map((o) => o.brokerCores ?? null) };
    if (observations.some((o) => o.detail)) details[broker] = observations.map((o) => o.detail ?? null);
  }
  return metric(name, unit, byBroker, { ...(note ? { note } : {}), ...(Object.keys(details).length > 0 ? { runs: details } : {}) });
}

/** A restarted broker gets the same warm-up as at the start, so its JIT is not what the next run measures. */
async function restartWarm(context: SuiteContext, broker: BrokerUnderTest): Promise<void> {
  await broker.restart();
  await warmUp(context, broker);
}

export async function warmUp(context: Pick<SuiteContext, 'workers' | 'credentials' | 'settings'>, broker: BrokerUnderTest): Promise<void> {
  await (context.workers[0] as LoadWorker).run({ kind: 'connect', target: targetOf(broker, context.credentials.ca), devices: [0, 50], count: context.settings.warmUpConnects, concurrency: 20, resume: false });
}

/** Waits until the broker uses less than a fifth of a core (or has exited), at most `maxMs`. */
async function waitForQuiet(broker: BrokerUnderTest, maxMs: number): Promise<void> {
  const deadline = performance.now() + maxMs;
  while (performance.now() < deadline) {
    const before = cpuSampleOf(broker.pid);
    await new Promise((resolve) => setTimeout(resolve, 250));
    const after = cpuSampleOf(broker.pid);
    if (before === undefined || after === undefined || cpuBetween(before, after).cores < 0.2) return;
  }
}

/** /proc sample, or undefined once the process has gone (it may die between two looks). */
function cpuSampleOf(pid: number): CpuSample | undefined {
  try {
    return sampleCpu(pid);
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const cores = (cpuSeconds: number, wallMs: number) => cpuSeconds / Math.max(0.001, wallMs / 1000);

export async function connectScenarios(context: SuiteContext): Promise<Metric[]> {
  const { settings, credentials } = context;
  const worker = context.workers[0] as LoadWorker;
  const connect = (resume: boolean) => async (broker: BrokerUnderTest): Promise<Observation> => {
    const { result } = await worker.run<ConnectRateResult>({
      kind: 'connect',
      target: targetOf(broker, credentials.ca),
      devices: [0, settings.connectDevices],
      count: settings.connectCount,
      concurrency: settings.concurrency,
      resume,
    });
    return {
      value: result.failed > settings.connectCount / 10 ? null : result.perSecond,
      loaderCores: cores(result.loaderCpuSeconds, result.elapsedMs),
      detail: { ok: result.ok, failed: result.failed, p50Ms: result.latencyMs.p50, p99Ms: result.latencyMs.p99, ...(resume ? { resumed: result.resumed, reuseRatio: r2(result.resumed / Math.max(1, result.ok)) } : {}), ...(result.failed > 0 ? { errors: result.errors } : {}) },
    };
  };
  const show = (o: Observation) => `${o.value === null ? 'failed' : Math.round(o.value)} conn/s${o.detail?.reuseRatio === undefined ? '' : `, reused ${Math.round(Number(o.detail.reuseRatio) * 100)}%`}`;
  const full = await alternate(context, 'mtls_connect_full', settings.reps, connect(false), show);
  const resumed = await alternate(context, 'mtls_connect_resumed', settings.reps, connect(true), show);
  const reuse = (runs: Observation[]) => runs.map((o) => `${Math.round(Number(o.detail?.reuseRatio ?? 0) * 100)}%`).join(', ');
  const everyRunResumed = Object.values(resumed).every((runs) => runs.every((o) => o.detail?.reuseRatio === 1));
  const reuseNote = `TLS 1.3 session tickets saved from a first connection; sessions resumed: ${everyRunResumed ? '100% in every run' : Object.entries(resumed).map(([broker, runs]) => `${broker} ${reuse(runs)}`).join(', ')}`;
  return [
    summarize('mtls_connect_full_per_s', 'connections/s', full, `new TLS 1.3 handshake + CONNECT/CONNACK, concurrency ${settings.concurrency}`),
    summarize('mtls_connect_resumed_per_s', 'connections/s', resumed, reuseNote),
  ];
}

export async function throughputScenarios(context: SuiteContext): Promise<Metric[]> {
  const { settings, credentials } = context;
  const worker = context.workers[0] as LoadWorker;
  const metrics: Metric[] = [];
  // QoS 1 first: a QoS 0 flood leaves a backlog in the broker's sockets that the next scenario would inherit.
  for (const qos of [1, 0] as const) {
    const runs = await alternate(
      context,
      `qos${qos}_throughput`,
      settings.reps,
      async (broker) => {
        const { result } = await worker.run<ThroughputResult>({
          kind: 'throughput',
          target: targetOf(broker, credentials.ca),
          devices: [0, settings.publishers],
          qos,
          durationMs: settings.throughputMs,
          payloadBytes: settings.payloadBytes,
          inflight: settings.qos1Inflight,
        });
        return { value: result.perSecond, loaderCores: cores(result.loaderCpuSeconds, result.windowMs), detail: { sent: result.sent, delivered: result.delivered, windowMs: Math.round(result.windowMs) } };
      },
      (o) => (o.value === null ? `failed: ${JSON.stringify(o.detail)}` : `${Math.round(o.value)} msg/s delivered (${String(o.detail?.delivered)} in the window; ${String(o.detail?.sent)} sent)`),
    );
    metrics.push(summarize(`qos${qos}_msgs_per_s`, 'messages/s', runs, `${settings.publishers} publishers → 1 subscriber on devices/+/telemetry, ${settings.payloadBytes}-byte payloads${qos === 1 ? `, ${settings.qos1Inflight} in flight per publisher` : ''}`));
  }
  return metrics;
}

/**
 * QoS 1 end-to-end latency at a fixed rate. For fleetgate (`serve`) the same window also reads the event loop's
 * delay from its own GET /metrics (prom-client's default `fleetgate_nodejs_eventloop_lag_*`, a
 * perf_hooks.monitorEventLoopDelay histogram reset at each scrape): scraped right before the job and right
 * after, so the second scrape covers the job alone (its publishers connecting, the stream, the drain).
 */
export async function latencyScenario(context: SuiteContext): Promise<Metric[]> {
  const { settings, credentials } = context;
  const worker = context.workers[0] as LoadWorker;
  const runs = await alternate(
    context,
    'latency',
    settings.reps,
    async (broker) => {
      const metricsUrl = broker.kind === 'fleetgate' && (broker as FleetgateUnderTest).mode === 'serve' ? (broker as FleetgateUnderTest).apiUrl : undefined;
      if (metricsUrl !== undefined) await readEventLoopDelay(metricsUrl, credentials.ca).catch(() => undefined);
      const { result } = await worker.run<LatencyResult>({
        kind: 'latency',
        target: targetOf(broker, credentials.ca),
        devices: [0, settings.publishers],
        qos: 1,
        ratePerSecond: settings.latencyRatePerSecond,
        durationMs: settings.latencyMs,
        payloadBytes: settings.payloadBytes,
      });
      let eventLoop: EventLoopDelay | undefined;
      if (metricsUrl !== undefined) eventLoop = await readEventLoopDelay(metricsUrl, credentials.ca).catch(() => undefined);
      return {
        value: result.latencyMs.p99,
        loaderCores: cores(result.loaderCpuSeconds, result.windowMs),
        detail: {
          p50: result.latencyMs.p50,
          p99: result.latencyMs.p99,
          p999: result.latencyMs.p999 ?? null,
          max: result.latencyMs.max,
          sent: result.sent,
          delivered: result.delivered,
          ...(eventLoop ? { eventLoopMaxMs: eventLoop.maxMs, eventLoopP99Ms: eventLoop.p99Ms } : {}),
        },
      };
    },
    (o) => `p50 ${String(o.detail?.p50)} ms, p99 ${String(o.detail?.p99)} ms, p99.9 ${String(o.detail?.p999 ?? '-')} ms (${String(o.detail?.delivered)}/${String(o.detail?.sent)})${o.detail?.eventLoopMaxMs === undefined ? '' : `; event loop delay max ${String(o.detail.eventLoopMaxMs)} ms, p99 ${String(o.detail.eventLoopP99Ms)} ms`}`,
  );
  const pick = (key: string, only?: (broker: string) => boolean): Runs =>
    Object.fromEntries(
      Object.entries(runs)
        .filter(([broker]) => only?.(broker) ?? true)
        .map(([broker, observations]) => [broker, observations.map((o) => ({ ...o, value: typeof o.detail?.[key] === 'number' ? o.detail[key] : null }))]),
    );
  const note = `QoS 1 at ${settings.latencyRatePerSecond} msg/s for ${settings.latencyMs / 1000} s, ${settings.publishers} publishers → 1 wildcard subscriber`;
  const metrics = [summarize('latency_p50_ms', 'ms', pick('p50'), note), summarize('latency_p99_ms', 'ms', runs, note), summarize('latency_p999_ms', 'ms', pick('p999'), note)];
  const withEventLoop = (broker: string) => runs[broker]?.some((o) => o.detail?.eventLoopMaxMs !== undefined) ?? false;
  if (Object.keys(runs).some(withEventLoop)) {
    const loopNote = 'fleetgate serve\'s event-loop delay during each latency run (its /metrics: fleetgate_nodejs_eventloop_lag_max/p99_seconds, monitorEventLoopDelay at 10 ms resolution); issue 16 goal: no stall above 5 ms';
    metrics.push(summarize('latency_eventloop_max_ms', 'ms', pick('eventLoopMaxMs', withEventLoop), loopNote), summarize('latency_eventloop_p99_ms', 'ms', pick('eventLoopP99Ms', withEventLoop), loopNote));
  }
  return metrics;
}

/**
 * N idle mTLS devices (RSS per connection), then the broker restarted under them: every device reconnects on
 * its own with the same full-jitter backoff; the storm lasts from "broker accepts connections again" to the
 * last device back.
 */
export async function idleFleetScenarios(context: SuiteContext): Promise<Metric[]> {
  const { settings, credentials, workers } = context;
  const storm = emptyRuns(context);
  const failedRuns = emptyRuns(context);
  const rss = await alternate(
    context,
    'idle_fleet',
    settings.slowReps,
    async (broker) => {
      const per = Math.ceil(settings.idleConnections / workers.length);
      const target = targetOf(broker, credentials.ca);
      // A fresh process for the baseline: memory freed by earlier runs stays in RSS (malloc arenas, V8 heap).
      await restartWarm(context, broker);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const rssBefore = broker.pids().reduce((sum, pid) => sum + rssKib(pid), 0);
      const cpuBefore = cpuSampleOf(broker.pid);
      const held = await Promise.all(
        workers.map((worker, k) =>
          worker.run<{ connected: number; failed: number }>({ kind: 'hold', target, devices: [k * per, Math.min(settings.idleConnections, (k + 1) * per)], concurrency: Math.max(1, Math.floor(settings.concurrency / workers.length)) }),
        ),
      );
      const connected = held.reduce((sum, h) => sum + h.result.connected, 0);
      const connectFailed = held.reduce((sum, h) => sum + h.result.failed, 0);
      await new Promise((resolve) => setTimeout(resolve, 2000)); // let buffers and lazy allocations settle
      const rssAfter = broker.pids().reduce((sum, pid) => sum + rssKib(pid), 0);
      const holdLoaderCores = Math.max(...held.map((h) => h.cpuSeconds / h.wallSeconds));
      // Sampled before the restart: the restarted broker is another process.
      const cpuAfter = cpuSampleOf(broker.pid);
      const holdBrokerCores = cpuBefore && cpuAfter ? cpuBetween(cpuBefore, cpuAfter).cores : undefined;
      context.progress(`idle_fleet ${broker.name}: ${connected} idle connections (${connectFailed} failed), RSS ${Math.round(rssBefore / 1024)} → ${Math.round(rssAfter / 1024)} MiB; restarting the broker`);

      await Promise.all(workers.map((worker) => worker.run({ kind: 'arm', policy: settings.stormBackoff })));
      const { downMs } = await broker.restart();
      const readyAt = Date.now();
      // The restarted broker is a new process: its CPU over the storm, from ready to settled.
      const stormCpuBefore = cpuSampleOf(broker.pid);
      const settled = await Promise.all(
        workers.map((worker) => worker.run<Awaited<ReturnType<IdleFleet['whenSettled']>>>({ kind: 'settle', timeoutMs: settings.stormTimeoutMs })),
      );
      const stormCpuAfter = cpuSampleOf(broker.pid);
      await Promise.all(workers.map((worker) => worker.run({ kind: 'release' })));
      const back = settled.reduce((sum, s) => sum + s.result.back, 0);
      const failed = settled.reduce((sum, s) => sum + s.result.failed, 0);
      const lastBackAt = Math.max(...settled.map((s) => s.result.lastBackAt));
      const refusals: Record<string, number> = {};
      for (const s of settled) for (const [key, count] of Object.entries(s.result.refusals)) refusals[key] = (refusals[key] ?? 0) + count;
      const stormSeconds = back > 0 ? (lastBackAt - readyAt) / 1000 : null;
      const stormLoaderCores = Math.max(...settled.map((s) => s.cpuSeconds / s.wallSeconds));
      const stormBrokerCores = stormCpuBefore && stormCpuAfter ? cpuBetween(stormCpuBefore, stormCpuAfter).cores : undefined;
      storm[broker.name]?.push({ value: stormSeconds, loaderCores: stormLoaderCores, ...(stormBrokerCores === undefined ? {} : { brokerCores: stormBrokerCores }), detail: { devices: connected, back, failed, restartMs: Math.round(downMs), refusedAttempts: refusals } });
      failedRuns[broker.name]?.push({ value: failed, loaderCores: null });
      context.progress(`reconnect_storm ${broker.name}: ${back}/${connected} back ${stormSeconds ?? '-'} s after the restart (restart took ${Math.round(downMs)} ms), ${failed} failed; retried attempts ${JSON.stringify(refusals)}`);
      return {
        value: connected > 0 ? (rssAfter - rssBefore) / connected : null,
        // The loader's pace does not bound a memory figure: its CPU is kept in the detail only.
        loaderCores: null,
        ...(holdBrokerCores === undefined ? {} : { brokerCores: holdBrokerCores }),
        detail: { connections: connected, connectFailed, rssBeforeKib: rssBefore, rssAfterKib: rssAfter, loaderCoresWhileConnecting: r2(holdLoaderCores) },
      };
    },
    (o) => `${o.value === null ? '-' : o.value.toFixed(1)} KiB per idle connection`,
  );
  const policy = settings.stormBackoff;
  return [
    summarize('rss_per_idle_conn_kib', 'KiB', rss, `(RSS with ${settings.idleConnections} idle mTLS connections − RSS before) / connections`),
    summarize('reconnect_storm_s', 's', storm, `${settings.idleConnections} devices, SIGTERM + restart, full-jitter backoff base ${policy.baseMs} ms cap ${policy.capMs} ms; from broker ready to last CONNACK`),
    summarize('reconnect_storm_failed_devices', 'devices', failedRuns, `devices not back after ${policy.maxAttempts} attempts or ${settings.stormTimeoutMs / 1000} s`),
  ];
}

/** fleetgate only: enrollment over MQTT (bench/enroll.ts) and revocation → disconnect (bench/revoke.ts). */
export async function fleetgateOnlyScenarios(context: SuiteContext): Promise<Metric[]> {
  const { settings, credentials, fleetgate } = context;
  if (fleetgate === undefined) {
    context.progress('fleetgate-only scenarios skipped: no fleetgate among --brokers');
    return [];
  }
  const enroll: number[] = [];
  const enrollDetail: unknown[] = [];
  const revoke: number[] = [];
  const revokeDetail: unknown[] = [];
  for (let rep = 0; rep < settings.slowReps; rep++) {
    const { phases } = await measureEnrollment({
      gateway: { mqttUrl: fleetgate.mqttUrl, apiUrl: fleetgate.apiUrl, pid: fleetgate.pid },
      ca: credentials.ca,
      token: credentials.token,
      devices: settings.enrollDevices,
      concurrency: settings.concurrency,
      warmup: settings.enrollWarmup,
      phases: ['enroll'],
      prefix: `suite${rep}-`,
      log: () => {},
    });
    const phase = phases[0];
    if (phase !== undefined) {
      enroll.push(phase.perSecond);
      enrollDetail.push({ ok: phase.ok, failed: phase.failed, p50Ms: phase.latencyMs.p50, p99Ms: phase.latencyMs.p99, gatewayCores: phase.gateway.cores, loaderCores: phase.loadGenerator.cores });
      context.progress(`enroll rep ${rep + 1}/${settings.slowReps} ${fleetgate.name}  ${phase.perSecond} enrollments/s (${phase.ok} ok, ${phase.failed} failed, gateway ${phase.gateway.cores} cores, loader ${phase.loadGenerator.cores} cores)`);
    }
    const revocation = await measureRevocation({ apiUrl: fleetgate.apiUrl, mqttUrl: fleetgate.mqttUrl, ca: credentials.ca, token: credentials.token, devices: settings.revokeDevices, prefix: `rv${rep}-`, log: () => {} });
    revoke.push(revocation.endToEndMs.p99);
    revokeDetail.push(revocation);
    context.progress(`revoke rep ${rep + 1}/${settings.slowReps} ${fleetgate.name}  p50 ${revocation.endToEndMs.p50} ms, p99 ${revocation.endToEndMs.p99} ms (${revocation.devices} devices, reconnects refused ${revocation.refusedReconnects})`);
  }
  const policyRuns: number[] = [];
  for (let rep = 0; rep < Math.max(3, settings.reps); rep++) policyRuns.push(measurePolicyCheckNs(settings.policyIterations).nsPerCheck);
  context.progress(`policy_check ${fleetgate.name}  ${policyRuns.map((ns) => ns.toFixed(0)).join(' / ')} ns per check`);
  return [
    metric('enroll_per_s', 'enrollments/s', { [fleetgate.name]: { runs: enroll } }, { runs: enrollDetail, note: `claim session + CSR over MQTT until accepted, ${settings.enrollDevices} devices, concurrency ${settings.concurrency} (bench/enroll.ts)` }),
    metric('revoke_to_disconnect_p99_ms', 'ms', { [fleetgate.name]: { runs: revoke } }, { runs: revokeDetail, note: `POST /v1/devices/{id}/revoke → client sees close, ${settings.revokeDevices} devices revoked one at a time (bench/revoke.ts)` }),
    // In this process (the orchestrator's Node), not in a broker.
    metric('policy_check_ns', 'ns', { [`fleetgate-node${process.versions.node.split('.')[0]}`]: { runs: policyRuns } }, { note: 'decideInScope: device publish + backend receive, in the orchestrator process (core/policy.ts)' }),
  ];
}
