import { createLatencyRecorder, type LatencySummary } from './latency-stats.ts';
import { type DeviceEvent, type DeviceKeyPair, type DeviceOutcome, type DeviceStage, SimulatedDevice, type SimulatedDeviceOptions, sleep } from './simulated-device.ts';

export interface FleetOptions {
  readonly count: number;
  /** Devices in their enrollment phase (claim session → device session) at once. */
  readonly concurrency: number;
  /** Serials are the prefix plus an index from 1, zero-padded to at least four digits: sim-0001 … */
  readonly serialPrefix: string;
  readonly device: Omit<SimulatedDeviceOptions, 'serial' | 'keyPair' | 'onEvent'>;
  /**
   * How long the fleet keeps living once every device has finished enrolling; 0 = until `signal` aborts.
   * Ignored when `device.stopAfter` ends each device's life early.
   */
  readonly durationMs: number;
  readonly signal?: AbortSignal;
  /** Key pairs made in advance, one per device in order (benchmarks). */
  readonly keyPairs?: readonly DeviceKeyPair[];
  readonly onProgress?: (progress: FleetProgress) => void;
  /** Lets a caller reach individual devices (tests renew one on demand). */
  readonly onDevice?: (device: SimulatedDevice) => void;
}

export interface FleetProgress {
  readonly phase: 'enrolling' | 'running' | 'stopping';
  readonly total: number;
  readonly started: number;
  readonly enrolled: number;
  readonly online: number;
  readonly failed: number;
  readonly telemetrySent: number;
  readonly renewals: number;
  readonly elapsedMs: number;
  /** Until the end of the run; undefined while enrolling or when running until interrupted. */
  readonly remainingMs: number | undefined;
}

export interface FleetSummary {
  readonly devices: number;
  /** Devices that received a certificate. */
  readonly enrolled: number;
  /** Devices that opened a session with their own certificate. */
  readonly online: number;
  /** Devices whose life ended in a final failure, at any stage. */
  readonly failed: number;
  /** Devices stopped (interrupt or end of the run) before they enrolled, or never started. */
  readonly interrupted: number;
  /** Final failures by code: gateway codes from `rejected` replies or the simulator's wire codes. */
  readonly failures: Readonly<Record<string, { readonly count: number; readonly stage: DeviceStage; readonly example: string }>>;
  /** Retried failures by code. */
  readonly retries: Readonly<Record<string, number>>;
  /** Request PUBLISH → `accepted` reply. */
  readonly enrollLatencyMs: LatencySummary;
  /** TCP + TLS + CONNECT → CONNACK, with the claim certificate and with the device certificate. */
  readonly connectLatencyMs: { readonly claim: LatencySummary; readonly device: LatencySummary };
  readonly renewLatencyMs: LatencySummary;
  readonly telemetrySent: number;
  readonly renewals: number;
  readonly renewalFailures: Readonly<Record<string, number>>;
  /** From the first device's start to the last `accepted` reply. */
  readonly enrollWindowMs: number;
  readonly enrollmentsPerSecond: number;
  readonly elapsedMs: number;
}

/**
 * Runs a fleet: at most `concurrency` devices enroll at once (a new one starts as soon as one is online or
 * has failed), then the whole fleet lives for `durationMs` and is stopped. Everything the devices report is
 * folded into one summary.
 */
export async function runFleet(options: FleetOptions): Promise<FleetSummary> {
  const { count, signal } = options;
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  const concurrency = Math.max(1, Math.min(options.concurrency, count || 1));
  // At least four digits (sensor-0001), as the README's walkthrough shows; more when the fleet needs them.
  const width = Math.max(4, String(count).length);
  const serialOf = (index: number) => `${options.serialPrefix}${String(index + 1).padStart(width, '0')}`;

  const enrollLatency = createLatencyRecorder();
  const claimConnect = createLatencyRecorder();
  const deviceConnect = createLatencyRecorder();
  const renewLatency = createLatencyRecorder();
  const retries: Record<string, number> = {};
  const renewalFailures: Record<string, number> = {};
  const counters = { started: 0, enrolled: 0, online: 0, failed: 0, telemetrySent: 0, renewals: 0 };
  let phase: FleetProgress['phase'] = 'enrolling';
  let endsAt: number | undefined;
  const startedAt = performance.now();
  let lastEnrolledAt = startedAt;

  const report = () =>
    options.onProgress?.({
      phase,
      total: count,
      ...counters,
      elapsedMs: performance.now() - startedAt,
      remainingMs: endsAt === undefined ? undefined : Math.max(0, endsAt - performance.now()),
    });

  const onEvent = (event: DeviceEvent) => {
    switch (event.type) {
      case 'connected':
        (event.credential === 'claim' ? claimConnect : deviceConnect).record(event.latencyMs);
        return;
      case 'enrolled':
        counters.enrolled++;
        lastEnrolledAt = performance.now();
        enrollLatency.record(event.latencyMs);
        return report();
      case 'online':
        counters.online++;
        return report();
      case 'telemetry':
        counters.telemetrySent++;
        return;
      case 'renewed':
        counters.renewals++;
        renewLatency.record(event.latencyMs);
        return report();
      case 'renewal-failed':
        renewalFailures[event.code] = (renewalFailures[event.code] ?? 0) + 1;
        return;
      case 'retry':
        retries[event.code] = (retries[event.code] ?? 0) + 1;
        return;
      case 'failed':
        counters.failed++;
        return report();
    }
  };

  const devices: SimulatedDevice[] = [];
  const lives: Promise<DeviceOutcome>[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count && !signal?.aborted) {
      const index = next++;
      const keyPair = options.keyPairs?.[index];
      const device = new SimulatedDevice({ ...options.device, serial: serialOf(index), onEvent, ...(keyPair ? { keyPair } : {}) });
      devices.push(device);
      options.onDevice?.(device);
      counters.started++;
      lives.push(device.run());
      await device.enrollmentPhase;
    }
  };
  // An interrupt must not wait for devices still enrolling (their retries can take minutes): stop them now.
  const stopAll = () => void Promise.all(devices.map((device) => device.stop()));
  signal?.addEventListener('abort', stopAll, { once: true });
  try {
    await Promise.all(Array.from({ length: count === 0 ? 0 : concurrency }, worker));
  } finally {
    signal?.removeEventListener('abort', stopAll);
  }

  if (options.device.stopAfter === undefined && !signal?.aborted) {
    phase = 'running';
    if (options.durationMs > 0) endsAt = performance.now() + options.durationMs;
    report();
    // A progress line that only moves on milestones would freeze while the fleet just publishes telemetry.
    const ticker = setInterval(report, 500);
    try {
      if (options.durationMs > 0) await sleep(options.durationMs, signal);
      else if (signal !== undefined) await sleep(2 ** 31 - 1, signal);
    } finally {
      clearInterval(ticker);
    }
  }
  phase = 'stopping';
  report();
  await Promise.all(devices.map((device) => device.stop()));
  const outcomes = await Promise.all(lives);

  const failures: Record<string, { count: number; stage: DeviceStage; example: string }> = {};
  for (const outcome of outcomes) {
    if (outcome.failure === undefined) continue;
    const entry = (failures[outcome.failure.code] ??= { count: 0, stage: outcome.failure.stage, example: `${outcome.serial}: ${outcome.failure.message}` });
    entry.count++;
  }
  const enrollWindowMs = lastEnrolledAt - startedAt;
  return {
    devices: count,
    enrolled: counters.enrolled,
    online: counters.online,
    failed: outcomes.filter((outcome) => outcome.state === 'failed').length,
    interrupted: count - outcomes.filter((outcome) => outcome.state === 'failed' || outcome.enrolled).length,
    failures,
    retries,
    enrollLatencyMs: enrollLatency.summary(),
    connectLatencyMs: { claim: claimConnect.summary(), device: deviceConnect.summary() },
    renewLatencyMs: renewLatency.summary(),
    telemetrySent: counters.telemetrySent,
    renewals: counters.renewals,
    renewalFailures,
    enrollWindowMs: Math.round(enrollWindowMs),
    enrollmentsPerSecond: enrollWindowMs > 0 ? Math.round((counters.enrolled / enrollWindowMs) * 1000 * 10) / 10 : 0,
    elapsedMs: Math.round(performance.now() - startedAt),
  };
}
