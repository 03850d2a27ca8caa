import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerSimCommand, type SimIo } from '../../cli/sim-command.ts';
import {
  clockSkewMs,
  type DeviceEvent,
  fullJitterDelayMs,
  type FleetProgress,
  maxTimerDelayMs,
  renderProgressLine,
  renewalAt,
  renewalDelayMs,
  runFleet,
  SimulatedDevice,
  summarizeLatencies,
} from '../../device-sim/index.ts';
import { runCli } from '../helpers/fleetgate-process.ts';
import { foreignDeviceCredential, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

const hour = 3_600_000;
const day = 24 * hour;

describe('renewal schedule (pure)', () => {
  const notBefore = new Date('2030-01-01T00:00:00Z');
  const notAfter = new Date(notBefore.getTime() + 90 * day);
  const at = (iso: string) => new Date(iso);

  it.each([
    // name, serverTime, receivedAt (local), expected local renewal instant
    ['clocks agree: two thirds into the lifetime', '2030-01-02T00:00:00Z', '2030-01-02T00:00:00Z', '2030-03-02T00:00:00Z'],
    ['gateway 2 h ahead: renew 2 h earlier on the local clock', '2030-01-02T02:00:00Z', '2030-01-02T00:00:00Z', '2030-03-01T22:00:00Z'],
    ['gateway 3 h behind: renew 3 h later on the local clock', '2030-01-02T00:00:00Z', '2030-01-02T03:00:00Z', '2030-03-02T03:00:00Z'],
    ['device clock at the epoch (no RTC): shifted by decades', '2030-01-02T00:00:00Z', '1970-01-01T00:00:00Z', '1970-03-01T00:00:00Z'],
  ])('%s', (_name, serverTime, receivedAt, expected) => {
    expect(renewalAt({ notBefore, notAfter, serverTime: at(serverTime), receivedAt: at(receivedAt) }).toISOString()).toBe(at(expected).toISOString());
  });

  it('measures skew as gateway minus local', () => {
    expect(clockSkewMs(at('2030-01-01T01:00:00Z'), at('2030-01-01T00:00:00Z'))).toBe(hour);
  });

  it('honours another fraction and is due at once when the moment has passed', () => {
    const inputs = { notBefore, notAfter, serverTime: notBefore, receivedAt: notBefore, fractionLeft: 0.1 };
    expect(renewalAt(inputs).getTime()).toBe(notBefore.getTime() + 81 * day);
    expect(renewalDelayMs(inputs, new Date(notAfter.getTime() + day))).toBe(0);
    expect(renewalDelayMs(inputs, notBefore)).toBe(81 * day);
    expect(() => renewalAt({ ...inputs, fractionLeft: 1 })).toThrow(RangeError);
  });

  it('a 365-day certificate renews beyond what one setTimeout can wait', () => {
    const yearLong = { notBefore, notAfter: new Date(notBefore.getTime() + 365 * day), serverTime: notBefore, receivedAt: notBefore };
    expect(renewalDelayMs(yearLong, notBefore)).toBeGreaterThan(maxTimerDelayMs);
  });
});

describe('backoff, statistics, progress line (pure)', () => {
  it('full jitter: uniform below min(cap, base·2^attempt)', () => {
    const policy = { baseMs: 100, capMs: 1000 };
    expect(fullJitterDelayMs(0, policy, () => 0)).toBe(0);
    expect(fullJitterDelayMs(0, policy, () => 0.999)).toBe(99);
    expect(fullJitterDelayMs(3, policy, () => 0.5)).toBe(400);
    expect(fullJitterDelayMs(60, policy, () => 0.999)).toBe(999);
    expect(fullJitterDelayMs(5000, policy, () => 0.5)).toBe(500);
  });

  it('nearest-rank percentiles', () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(summarizeLatencies(samples)).toMatchObject({ count: 100, min: 1, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
    expect(summarizeLatencies([])).toMatchObject({ count: 0, p50: 0 });
    expect(summarizeLatencies([7])).toMatchObject({ p50: 7, p99: 7 });
  });

  it('renders a bar while enrolling and counters afterwards, cut to the terminal width', () => {
    const progress: FleetProgress = { phase: 'enrolling', total: 100, started: 60, enrolled: 50, online: 50, failed: 2, telemetrySent: 0, renewals: 0, elapsedMs: 2000, remainingMs: undefined };
    expect(renderProgressLine(progress)).toBe('enrolling [############------------] 50/100 online, 2 failed, 25/s');
    expect(renderProgressLine({ ...progress, phase: 'running', remainingMs: 4200, telemetrySent: 9 })).toMatch(/running 50\/100 online, 2 failed, 9 telemetry, 0 renewals, 5 s left/);
    expect(renderProgressLine(progress, 20)).toHaveLength(20);
  });
});

describe('simulated devices against a real gateway', () => {
  let gw: TestGateway;
  const target = () => ({ url: `mqtts://127.0.0.1:${gw.mqttPort}`, ca: gw.ca });

  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('a fleet of 20 enrolls, connects with its own certificates and publishes telemetry', async () => {
    const claim = await gw.issueClaim({ maxUses: 20 });
    const summary = await runFleet({
      count: 20,
      concurrency: 8,
      serialPrefix: 'fleet-a-',
      durationMs: 600,
      device: { target: target(), claim, telemetryIntervalMs: 100 },
    });
    expect(summary).toMatchObject({ devices: 20, enrolled: 20, online: 20, failed: 0, interrupted: 0, failures: {} });
    expect(summary.enrollLatencyMs.count).toBe(20);
    expect(summary.connectLatencyMs.claim.count).toBe(20);
    expect(summary.connectLatencyMs.device.count).toBe(20);
    expect(summary.enrollLatencyMs.p99).toBeGreaterThan(0);
    expect(summary.telemetrySent).toBeGreaterThanOrEqual(20);

    const { registry } = gw.gateway.dataDir;
    const devices = await registry.listDevices({ prefix: 'fleet-a-', limit: 1000 });
    expect(devices.map((d) => d.id).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `fleet-a-${String(i + 1).padStart(4, '0')}`));
    expect(devices.every((d) => d.status === 'active' && d.template === 'default')).toBe(true);
    const enrolls = (await registry.queryAudit({ action: 'device.enroll', result: 'ok', limit: 1000 })).filter((e) => e.deviceId?.startsWith('fleet-a-'));
    expect(new Set(enrolls.map((e) => e.deviceId)).size).toBe(20);
    expect((await registry.getClaim(claim.claimId))?.uses).toBe(20);
    // Each device also opened a session with its own certificate, which the broker audited.
    await gw.waitForAudit({ deviceId: 'fleet-a-0020', action: 'mqtt.connect', result: 'ok' });
  });

  it('gives up on a final refusal with the gateway code, without retrying it', async () => {
    const claim = await gw.issueClaim({ maxUses: 2 });
    const summary = await runFleet({
      count: 4,
      concurrency: 1,
      serialPrefix: 'fleet-b-',
      durationMs: 0,
      device: { target: target(), claim, telemetryIntervalMs: 0, stopAfter: 'online' },
    });
    expect(summary).toMatchObject({ enrolled: 2, online: 2, failed: 2, retries: {} });
    // A used-up claim is refused at CONNECT (CONNACK 5, AUTH_CLAIM_INVALID in the audit log).
    expect(summary.failures.CONNACK_NOT_AUTHORIZED).toMatchObject({ count: 2, stage: 'enroll' });
    expect(await gw.gateway.dataDir.registry.getDevice('fleet-b-0004')).toBeUndefined();
  });

  it('ends at once on a CONNACK refusal (a certificate from a CA the gateway does not trust)', async () => {
    const summary = await runFleet({
      count: 1,
      concurrency: 1,
      serialPrefix: 'fleet-c-',
      durationMs: 0,
      device: { target: target(), claim: await foreignDeviceCredential('fleet-c-0001'), telemetryIntervalMs: 0, backoff: { baseMs: 10, capMs: 50, maxAttempts: 3 } },
    });
    expect(summary).toMatchObject({ enrolled: 0, failed: 1, retries: {} });
    expect(summary.failures.CONNACK_NOT_AUTHORIZED).toMatchObject({ count: 1, stage: 'enroll' });
  });

  it('reports a key that does not match its certificate without retrying', async () => {
    const claim = await gw.issueClaim({ maxUses: 1 });
    const other = await gw.issueClaim({ maxUses: 1 });
    const summary = await runFleet({
      count: 1,
      concurrency: 1,
      serialPrefix: 'fleet-d-',
      durationMs: 0,
      device: { target: target(), claim: { cert: claim.cert, key: other.key }, telemetryIntervalMs: 0 },
    });
    expect(summary).toMatchObject({ failed: 1, retries: {} });
    expect(summary.failures.TLS_ERROR?.example).toMatch(/cannot load the client credential/);
  });

  it('renews over MQTT on demand: new key, new certificate, old one superseded once the new one connects', async () => {
    const claim = await gw.issueClaim({ maxUses: 1 });
    const events: DeviceEvent[] = [];
    const device = new SimulatedDevice({ serial: 'renew-now-1', target: target(), claim, telemetryIntervalMs: 50, onEvent: (e) => events.push(e) });
    const life = device.run();
    await device.enrollmentPhase;
    expect(device.state).toBe('online');
    const first = device.certificate;
    expect(first?.deviceId).toBe('renew-now-1');

    const renewed = await device.renewNow();
    expect(renewed.serial).not.toBe(first?.serial);
    expect(device.certificate?.serial).toBe(renewed.serial);
    expect(device.state).toBe('online');
    await gw.waitForAudit({ deviceId: 'renew-now-1', action: 'certificate.supersede' });
    const certificates = await gw.gateway.dataDir.registry.listCertificates('renew-now-1');
    expect(certificates.find((c) => c.serial === first?.serial)?.status).toBe('superseded');
    expect(certificates.find((c) => c.serial === renewed.serial)).toMatchObject({ status: 'active', replaces: first?.serial });
    expect(certificates.find((c) => c.serial === renewed.serial)?.publicKeyHash).not.toBe(certificates.find((c) => c.serial === first?.serial)?.publicKeyHash);

    // Still alive on the new certificate: telemetry keeps flowing.
    const sentBefore = events.filter((e) => e.type === 'telemetry').length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(events.filter((e) => e.type === 'telemetry').length).toBeGreaterThan(sentBefore);
    expect(await device.stop()).toMatchObject({ state: 'stopped', enrolled: true, online: true, certificateSerial: renewed.serial });
    expect(await life).toMatchObject({ state: 'stopped' });
    await gw.waitForAudit({ deviceId: 'renew-now-1', action: 'device.renew', result: 'ok' });
  });

  it('renews by itself on schedule (renewal.afterMs) and keeps running', async () => {
    const claim = await gw.issueClaim({ maxUses: 1 });
    const summary = await runFleet({
      count: 1,
      concurrency: 1,
      serialPrefix: 'renew-auto-',
      durationMs: 1500,
      device: { target: target(), claim, telemetryIntervalMs: 200, renewal: { afterMs: 400 } },
    });
    expect(summary.failed).toBe(0);
    expect(summary.renewals).toBeGreaterThanOrEqual(1);
    expect(summary.renewLatencyMs.count).toBe(summary.renewals);
    const certificates = await gw.gateway.dataDir.registry.listCertificates('renew-auto-0001');
    // The run may end mid-renewal: one more certificate issued, and perhaps already used (superseding the
    // previous one) while the device was told to stop before it counted the renewal.
    expect(certificates.length).toBeGreaterThanOrEqual(summary.renewals + 1);
    expect(certificates.length).toBeLessThanOrEqual(summary.renewals + 2);
    const superseded = certificates.filter((c) => c.status === 'superseded').length;
    expect(superseded).toBeGreaterThanOrEqual(summary.renewals);
    expect(superseded).toBeLessThanOrEqual(summary.renewals + 1);
  });
});

describe('backoff against the per-claim rate limit', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ FLEETGATE_ENROLL_RATE_PER_CLAIM: '2' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('retries ENROLL_RATE_LIMITED with jittered backoff until every device is enrolled', async () => {
    const claim = await gw.issueClaim({});
    const summary = await runFleet({
      count: 10,
      concurrency: 10,
      serialPrefix: 'limited-',
      durationMs: 0,
      device: { target: { url: `mqtts://127.0.0.1:${gw.mqttPort}`, ca: gw.ca }, claim, telemetryIntervalMs: 0, stopAfter: 'enrolled', backoff: { baseMs: 250, capMs: 2000, maxAttempts: 12 } },
    });
    expect(summary).toMatchObject({ enrolled: 10, failed: 0 });
    expect(summary.retries.ENROLL_RATE_LIMITED).toBeGreaterThan(0);
  });

  it('stops at once on interrupt, even while devices wait in backoff, and counts them as interrupted', async () => {
    const claim = await gw.issueClaim({});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 600);
    const started = performance.now();
    const summary = await runFleet({
      count: 30,
      concurrency: 30,
      serialPrefix: 'interrupted-',
      durationMs: 0,
      signal: controller.signal,
      device: { target: { url: `mqtts://127.0.0.1:${gw.mqttPort}`, ca: gw.ca }, claim, telemetryIntervalMs: 0, backoff: { baseMs: 5000, capMs: 30_000, maxAttempts: 10 } },
    });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(summary.failed).toBe(0);
    expect(summary.interrupted).toBeGreaterThan(0);
    expect(summary.enrolled + summary.interrupted).toBe(30);
  });
});

describe('fleetgate sim', () => {
  let gw: TestGateway;
  const dir = makeTempDir();
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
    dir.remove();
  });

  async function writeClaimDir(maxUses: number): Promise<string> {
    const claim = await gw.issueClaim({ maxUses });
    const out = join(dir.path, `claim-${maxUses}-${Math.random().toString(36).slice(2, 7)}`);
    (await import('node:fs')).mkdirSync(out);
    writeFileSync(join(out, 'claim.crt'), claim.cert);
    writeFileSync(join(out, 'claim.key'), claim.key, { mode: 0o600 });
    writeFileSync(join(out, 'ca.crt'), gw.ca);
    return out;
  }

  function inProcessIo() {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const io: SimIo & { exitCode: number } = {
      stdout,
      stderr,
      exitCode: 0,
      setExitCode(code) {
        io.exitCode = code;
      },
      interrupts: () => ({ signal: new AbortController().signal, release() {} }),
    };
    return { io, out: () => out, err: () => err };
  }

  async function runInProcess(args: string[]) {
    const { io, out, err } = inProcessIo();
    const program = new Command('fleetgate').exitOverride();
    registerSimCommand(program, io);
    await program.parseAsync(['node', 'fleetgate', 'sim', ...args]);
    return { code: io.exitCode, stdout: out(), stderr: err() };
  }

  it('runs a small fleet and prints one JSON summary (in process)', async () => {
    const claimDir = await writeClaimDir(3);
    const result = await runInProcess(['--claim-dir', claimDir, '--mqtt', `mqtts://127.0.0.1:${gw.mqttPort}`, '--count', '3', '--serial-prefix', 'cli-a-', '--telemetry-interval', '100ms', '--duration', '0.4s', '--json']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe(''); // no progress bar: not a TTY, and --json
    const summary = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ devices: 3, enrolled: 3, online: 3, failed: 0, settings: { count: 3, serialPrefix: 'cli-a-', telemetryIntervalMs: 100, durationMs: 400 } });
    expect(JSON.stringify(summary)).not.toContain('PRIVATE KEY');
    expect(await gw.gateway.dataDir.registry.getDevice('cli-a-0003')).toMatchObject({ status: 'active' });
  });

  it('prints a readable table and exits 1 when devices fail (in process)', async () => {
    const claimDir = await writeClaimDir(1);
    const result = await runInProcess(['--claim-dir', claimDir, '--mqtt', `mqtts://127.0.0.1:${gw.mqttPort}`, '--count', '2', '--concurrency', '1', '--serial-prefix', 'cli-b-', '--duration', '0.1s']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^devices\s+2$/m);
    expect(result.stdout).toMatch(/^enrolled\s+1$/m);
    expect(result.stdout).toMatch(/CONNACK_NOT_AUTHORIZED ×1 \(enroll\)/);
    expect(result.stdout).toMatch(/enroll\s+1\s+[\d.]+/);
  });

  it('refuses bad flags listing every problem at once', async () => {
    await expect(runInProcess(['--mqtt', 'http://x', '--count', '0', '--duration', 'soon'])).rejects.toMatchObject({
      problems: expect.arrayContaining([expect.stringMatching(/--claim-dir DIR/), expect.stringMatching(/mqtts/), expect.stringMatching(/--count/), expect.stringMatching(/--duration/)]),
    });
  });

  const wired = readFileSync(join(import.meta.dirname, '..', '..', 'cli', 'main.ts'), 'utf8').includes('registerSimCommand');
  it.runIf(wired)('works as `fleetgate sim` in a real process', async () => {
    const claimDir = await writeClaimDir(2);
    const result = await runCli(['sim', '--claim-dir', claimDir, '--mqtt', `mqtts://127.0.0.1:${gw.mqttPort}`, '--count', '2', '--serial-prefix', 'cli-c-', '--duration', '0.2s', '--json']);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ enrolled: 2, online: 2, failed: 0 });
  });
});
