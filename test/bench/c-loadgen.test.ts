import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerUnderTest } from '../../bench/broker-under-test.ts';
import { buildLoadgen, startCLoadWorker } from '../../bench/c-loadgen.ts';
import { type BenchCredentials, createBenchCredentials } from '../../bench/device-credentials.ts';
import type { LoadWorker } from '../../bench/load-worker-pool.ts';
import type { ConnectRateResult, IdleFleet, LatencyResult, Target, ThroughputResult } from '../../bench/mqtt-load.ts';
import { startMosquitto } from '../../bench/mosquitto-process.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * The C load generator (bench/loadgen/, driven through bench/c-loadgen.ts) against a private Mosquitto with
 * mTLS, the configuration of the side-by-side suite: every job kind, the result shapes the suite reads, a
 * restart under held devices, and a refused port. Behaviour only; the loads are tiny.
 */
type Settled = Awaited<ReturnType<IdleFleet['whenSettled']>>;

describe('C load generator against a private Mosquitto', () => {
  const dir = makeTempDir('fgload-test-');
  let credentials: BenchCredentials;
  let mosquitto: BrokerUnderTest;
  let worker: LoadWorker;
  let target: Target;

  beforeAll(async () => {
    buildLoadgen();
    ({ credentials } = await createBenchCredentials({ dataDir: join(dir.path, 'data'), count: 6, prefix: 'lg-', serviceName: 'lg-backend' }));
    mosquitto = await startMosquitto({ dir: join(dir.path, 'mosquitto'), tls: credentials.pki, serviceNames: [credentials.service.id], pinning: {} });
    target = { host: mosquitto.host, port: mosquitto.port, ca: credentials.ca };
    worker = startCLoadWorker(credentials, {});
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await mosquitto?.stop();
    dir.remove();
  });

  it('full mTLS connects: every one gets CONNACK 0, with latencies and its own CPU', async () => {
    const { result, cpuSeconds, wallSeconds } = await worker.run<ConnectRateResult>({ kind: 'connect', target, devices: [0, 6], count: 30, concurrency: 5, resume: false });
    expect(result).toMatchObject({ ok: 30, failed: 0, resumed: 0, errors: {} });
    expect(result.perSecond).toBeGreaterThan(0);
    expect(result.latencyMs.count).toBe(30);
    expect(result.latencyMs.p50).toBeLessThanOrEqual(result.latencyMs.p99);
    expect(cpuSeconds).toBeGreaterThan(0);
    expect(wallSeconds).toBeGreaterThan(0);
  });

  it('resumed connects reuse the TLS sessions saved from an earlier connection of the same device', async () => {
    const { result } = await worker.run<ConnectRateResult>({ kind: 'connect', target, devices: [0, 6], count: 24, concurrency: 4, resume: true });
    expect(result.ok).toBe(24);
    expect(result.resumed).toBeGreaterThan(0);
  });

  it('QoS 1 throughput: the subscriber receives what the report says it delivered', async () => {
    const { result } = await worker.run<ThroughputResult>({ kind: 'throughput', target, devices: [0, 4], qos: 1, durationMs: 1200, payloadBytes: 64, inflight: 8 });
    expect(result.delivered).toBeGreaterThan(0);
    expect(result.sent).toBeGreaterThan(0);
    expect(result.windowMs).toBeGreaterThan(0);
    expect(result.perSecond).toBeCloseTo((result.delivered * 1000) / result.windowMs, 0);
    // A QoS 1 message is delivered only after it was sent; at most 4 publishers × 8 in flight straddle the window start.
    expect(result.delivered).toBeLessThanOrEqual(result.sent + 4 * 8);
  });

  it('QoS 0 throughput runs and delivers', async () => {
    const { result } = await worker.run<ThroughputResult>({ kind: 'throughput', target, devices: [0, 2], qos: 0, durationMs: 800, payloadBytes: 32, inflight: 1 });
    expect(result.delivered).toBeGreaterThan(0);
  });

  it('latency: paced QoS 1 messages reach the subscriber with ordered percentiles', async () => {
    const { result } = await worker.run<LatencyResult & { latencyMs: { p999: number } }>({ kind: 'latency', target, devices: [0, 3], qos: 1, ratePerSecond: 200, durationMs: 1200, payloadBytes: 64 });
    expect(result.delivered).toBeGreaterThanOrEqual(1);
    expect(result.sent).toBeGreaterThanOrEqual(result.delivered);
    expect(result.latencyMs.count).toBeGreaterThanOrEqual(1);
    const { p50, p99, p999, max } = result.latencyMs;
    expect(p50).toBeLessThanOrEqual(p99);
    expect(p99).toBeLessThanOrEqual(p999);
    expect(p999).toBeLessThanOrEqual(max);
  });

  it('held devices come back by themselves after a broker restart (arm, settle, release)', async () => {
    const held = await worker.run<{ connected: number; failed: number }>({ kind: 'hold', target, devices: [0, 6], concurrency: 3 });
    expect(held.result).toEqual({ connected: 6, failed: 0 });
    await worker.run({ kind: 'arm', policy: { baseMs: 100, capMs: 400, maxAttempts: 30 } });
    const restartedAt = Date.now();
    await mosquitto.restart();
    const { result } = await worker.run<Settled>({ kind: 'settle', timeoutMs: 20_000 });
    expect(result.back).toBe(6);
    expect(result.failed).toBe(0);
    // Epoch milliseconds, comparable with Date.now() as the suite does.
    expect(result.firstDropAt).toBeGreaterThanOrEqual(restartedAt - 1000);
    expect(result.lastBackAt).toBeGreaterThanOrEqual(result.firstDropAt);
    expect(result.lastBackAt).toBeLessThanOrEqual(Date.now());
    await expect(worker.run({ kind: 'release' })).resolves.toMatchObject({ result: null });
  });

  it('a closed port is reported as failures, and the generator keeps serving jobs', async () => {
    const closed = { ...target, port: 1 };
    const { result } = await worker.run<ConnectRateResult>({ kind: 'connect', target: closed, devices: [0, 2], count: 4, concurrency: 2, resume: false });
    expect(result).toMatchObject({ ok: 0, failed: 4 });
    expect(Object.values(result.errors).reduce((a, b) => a + b, 0)).toBe(4);
    await expect(worker.run({ kind: 'throughput', target: closed, devices: [0, 2], qos: 1, durationMs: 200, payloadBytes: 8, inflight: 1 })).rejects.toThrow(/subscriber/);
    const again = await worker.run<ConnectRateResult>({ kind: 'connect', target, devices: [0, 2], count: 2, concurrency: 1, resume: false });
    expect(again.result.ok).toBe(2);
  });
});
