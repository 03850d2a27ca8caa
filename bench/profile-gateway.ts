import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchCredentials } from './device-credentials.ts';
import { measureConnectRate, measureLatency, measureThroughput, type Target } from './mqtt-load.ts';
import { cpuBetween, sampleCpu } from './process-cpu.ts';
import { summarizeCpuProfile } from './profile-summary.ts';
import { systemClock } from '../core/index.ts';
import { ensureServerCertificate, loadOrCreatePki } from '../provisioning/index.ts';

/**
 * Broker CPU per operation of one `fleetgate serve`, for comparing builds of the gateway (issue 16):
 *
 *   node --import tsx bench/profile-gateway.ts --root /path/to/other/checkout --data /tmp/fg-data [--profile DIR]
 *
 * `--root` is a checkout whose `build/` exists (`npx tsc -b cli`), so the same load can be run against a
 * build before and after a change, alternating, in one session. The load runs in this process (the same
 * raw-MQTT client as the suite, bench/mqtt-load.ts); the figure is the gateway's CPU seconds (/proc, every
 * thread and the main thread) divided by the operations, which a noisy shared machine distorts far less
 * than rates. With --profile the gateway runs under --cpu-prof and the heaviest self-time functions are printed.
 *
 * With --minimal the same load runs against bench/minimal-aedes-broker.ts instead (issue 16's yardstick:
 * aedes behind node:tls mTLS, client id = CN, a per-device topic ACL), with the gateway's server certificate
 * and CA from the same data directory, run by this Node from this checkout (`--root` is ignored).
 */
const { values } = parseArgs({
  options: {
    root: { type: 'string', default: resolve(import.meta.dirname, '..') },
    data: { type: 'string', default: '/tmp/fleetgate-profile-data' },
    devices: { type: 'string', default: '200' },
    connects: { type: 'string', default: '1500' },
    'throughput-ms': { type: 'string', default: '6000' },
    publishers: { type: 'string', default: '10' },
    /** Comma-separated phases: full, resumed, qos1, qos0, latency. */
    only: { type: 'string' },
    profile: { type: 'string' },
    minimal: { type: 'boolean', default: false },
  },
});

const devicesWanted = Number(values.devices);
const { credentials } = await createBenchCredentials({ dataDir: values.data, count: devicesWanted, prefix: 'prof', serviceName: 'bench-subscriber' });
const devices = credentials.devices.slice(0, devicesWanted);

const profileDir = values.profile === undefined ? undefined : resolve(values.profile);
if (profileDir !== undefined) {
  rmSync(profileDir, { recursive: true, force: true });
  mkdirSync(profileDir, { recursive: true });
}
const profileFlags = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
let minimalArgv: string[] = [];
if (values.minimal) {
  const pki = await loadOrCreatePki({ dataDir: values.data, clock: systemClock });
  const serverPair = await ensureServerCertificate({ dataDir: values.data, root: pki.root, hostnames: ['localhost'], clock: systemClock });
  const files = { ca: join(values.data, 'minimal-ca.pem'), cert: join(values.data, 'minimal-cert.pem'), key: join(values.data, 'minimal-key.pem') };
  writeFileSync(files.ca, pki.caBundle.join('\n'));
  writeFileSync(files.cert, serverPair.cert);
  writeFileSync(files.key, serverPair.key, { mode: 0o600 });
  const port = 20000 + (process.pid % 20000);
  minimalArgv = [...profileFlags, '--import', 'tsx', join(import.meta.dirname, 'minimal-aedes-broker.ts'), String(port), files.ca, files.cert, files.key, credentials.service.id];
}
const argv = [
  ...profileFlags,
  join(values.root, 'bin', 'fleetgate.js'),
  'serve',
  '--data-dir',
  values.data,
  '--host',
  '127.0.0.1',
  '--mqtt-port',
  '0',
  '--api-port',
  '0',
  '--hostname',
  'localhost',
];
const child = spawn(process.execPath, values.minimal ? minimalArgv : argv, {
  cwd: resolve(import.meta.dirname, '..'),
  env: {
    ...process.env,
    FLEETGATE_LOG_LEVEL: 'warn',
    FLEETGATE_MAX_PENDING_HANDSHAKES_PER_SOURCE: '512',
    FLEETGATE_MAX_CONNECTIONS_PER_SOURCE: '100000',
    FLEETGATE_CONNECT_RATE: '100000',
    FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000000',
    FLEETGATE_API_RATE_LIMIT_PER_MINUTE: '1000000',
    FLEETGATE_PUBLISH_RATE: '1000000',
    FLEETGATE_PUBLISH_BYTES_RATE: '1000000000',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let stdout = '';
child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
const ready = await new Promise<string>((done, fail) => {
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    const match = /fleetgate ready .*|minimal aedes ready on \d+/.exec(stdout)?.[0];
    if (match) done(match);
  });
  child.once('exit', (code) => fail(new Error(`fleetgate exited with ${code}\n${stdout}`)));
});
const port = Number(/mqtt=mqtts:\/\/[^:]+:(\d+)|minimal aedes ready on (\d+)/.exec(ready)?.slice(1).find((group) => group !== undefined));
const target: Target = { host: '127.0.0.1', port, ca: credentials.ca };
const pid = child.pid as number;

const phases = (values.only ?? 'full,resumed,qos1,qos0').split(',');
const results: Record<string, unknown> = { root: values.minimal ? 'minimal aedes' : values.root };
async function measure(name: string, run: () => Promise<number>): Promise<void> {
  const before = sampleCpu(pid);
  const operations = await run();
  const after = sampleCpu(pid);
  const cpu = cpuBetween(before, after);
  const mainSeconds = after.mainThreadSeconds - before.mainThreadSeconds;
  results[name] = { operations, cpuUsPerOp: Math.round((cpu.cpuSeconds * 1e6) / Math.max(1, operations) * 10) / 10, mainUsPerOp: Math.round((mainSeconds * 1e6) / Math.max(1, operations) * 10) / 10, cores: cpu.cores };
}

const connects = Number(values.connects);
// Warm-up: JIT and the checked-leaf cache, not measured.
await measureConnectRate(target, devices, { count: Math.min(300, connects), concurrency: 20, resume: false });
for (const phase of phases) {
  if (phase === 'full') await measure('connect_full', async () => (await measureConnectRate(target, devices, { count: connects, concurrency: 20, resume: false })).ok);
  if (phase === 'resumed') await measure('connect_resumed', async () => (await measureConnectRate(target, devices, { count: connects, concurrency: 20, resume: true })).ok);
  if (phase === 'latency') {
    // The suite's latency scenario: QoS 1 at 1,000 msg/s from 20 publishers to one wildcard subscriber.
    let latency: unknown;
    await measure('latency', async () => {
      const result = await measureLatency(target, devices.slice(0, 20), credentials.service, { qos: 1, ratePerSecond: 1000, durationMs: Number(values['throughput-ms']), payloadBytes: 64 });
      latency = { p50: result.latencyMs.p50, p90: result.latencyMs.p90, p99: result.latencyMs.p99, max: result.latencyMs.max };
      return result.delivered;
    });
    (results.latency as Record<string, unknown>).ms = latency;
  }
  for (const qos of [1, 0] as const) {
    if (phase !== `qos${qos}`) continue;
    // The window only: set-up connects and the ramp are outside the CPU interval as far as possible.
    let delivered = 0;
    await measure(`qos${qos}`, async () => {
      const result = await measureThroughput(target, devices.slice(0, Number(values.publishers)), credentials.service, { qos, durationMs: Number(values['throughput-ms']), payloadBytes: 64, inflight: 16 });
      delivered = result.sent + result.delivered;
      return result.delivered;
    });
    (results[`qos${qos}`] as Record<string, unknown>).sentPlusDelivered = delivered;
  }
}

child.kill('SIGTERM');
await once(child, 'exit');
if (profileDir !== undefined) {
  const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'));
  if (file !== undefined) {
    const summary = summarizeCpuProfile(join(profileDir, file));
    results.profile = { busy: summary.busy.slice(0, 8), top: summary.topFunctions };
  }
}
process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
process.exit(0);
