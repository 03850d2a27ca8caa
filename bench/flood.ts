import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { apiRequest } from '../cli/api-client.ts';
import { openDataDir } from '../cli/data-dir.ts';
import { createCsr, generateKeyPair, privateKeyToPem, systemClock } from '../core/index.ts';
import { registerDevice } from '../provisioning/index.ts';
import { registerService } from '../provisioning/register-service.ts';
import { startGatewayProcess } from './gateway-process.ts';
import { createFrameReader, decodePublish, encodeConnect, encodePublish, encodeSubscribe } from './mqtt-wire.ts';

/**
 * "Flood: one abusive device vs the fleet" (bench/RESULTS.md). The same scenario against fleetgate and a
 * private Mosquitto with the equivalent configuration (mTLS, CN as username, `devices/%u/#` ACL):
 * - abusers: devices writing QoS 0 PUBLISH frames as fast as their TLS socket takes them (raw frames, so the
 *   load generator is not the bottleneck); one that is closed reconnects after a second, like buggy firmware;
 * - a fleet of well-behaved devices, 2 QoS 0 messages per second each, timestamped;
 * - a backend subscribed to `devices/#` that reads everything, and a second one that never reads.
 * Recorded per broker: what the broker accepted from the abusers and delivered to the backend (msg/s), what
 * share of the fleet's messages reached the backend and how late, peak RSS, and what was dropped.
 *
 *   npm run bench:flood -- [--seconds 15] [--abusers 1,10] [--fleet 50] [--brokers fleetgate,mosquitto]
 */

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length - 1; i++) if (process.argv[i]?.startsWith('--')) args.set(process.argv[i]!.slice(2), process.argv[i + 1]!);
const seconds = Number(args.get('seconds') ?? 15);
const abuserCounts = (args.get('abusers') ?? '1,10').split(',').map(Number);
const fleetSize = Number(args.get('fleet') ?? 50);
const brokerNames = (args.get('brokers') ?? 'fleetgate,mosquitto').split(',');
const maxAbusers = Math.max(...abuserCounts);

interface Broker {
  readonly name: 'fleetgate' | 'mosquitto';
  readonly port: number;
  readonly pid: number;
  /** fleetgate's flow-control counters (undefined for Mosquitto). */
  counters(): Promise<Record<string, number> | undefined>;
  stop(): Promise<void>;
}

interface Credential {
  readonly key: string;
  readonly cert: string;
}
interface FloodIdentities {
  readonly ca: string;
  readonly adminToken: string;
  readonly credentials: Record<string, Credential>;
}

/** Devices and services registered on the data directory, which is then closed and handed to the brokers. */
async function prepareIdentities(dataDir: string, devices: string[], services: string[]): Promise<FloodIdentities> {
  const opened = await openDataDir({ path: dataDir, hostnames: ['localhost'] });
  const deps = { registry: opened.registry, authorities: opened.authorities, clock: systemClock };
  const credentials: Record<string, Credential> = {};
  for (const [id, kind] of [...devices.map((id) => [id, 'device'] as const), ...services.map((id) => [id, 'service'] as const)]) {
    const keys = await generateKeyPair();
    const csr = await createCsr(keys, id);
    const record = kind === 'device' ? await registerDevice(deps, { id, csr, actor: 'bench' }) : await registerService(deps, { name: id, csr, actor: 'bench' });
    credentials[id] = { key: await privateKeyToPem(keys.privateKey), cert: record.pem + opened.pki.pem.deviceCa };
  }
  await opened.registry.close();
  return { ca: opened.pki.pem.root, adminToken: opened.adminToken, credentials };
}

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no RSS for ${pid}`);
  return Number(match[1]) * 1024;
}

function counterValue(metricsText: string, name: string): number {
  let total = 0;
  for (const line of metricsText.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Calls back with (topic, payload) for each PUBLISH in a byte stream; other packets are skipped. */
function publishReader(onPublish: (topic: string, payload: Buffer) => void): (chunk: Buffer) => void {
  return createFrameReader((frame) => {
    if (frame.type !== 3) return;
    const { topic, payload } = decodePublish(frame);
    onPublish(topic, payload);
  });
}
const connectFrame = (clientId: string) => encodeConnect(clientId, 60);
const subscribeFrame = (filter: string) => encodeSubscribe(1, filter, 0);
const publishFrame = (topic: string, payload: Buffer) => encodePublish(topic, payload);

/** Resolves on 'drain', 'close' or after a second, whichever comes first, and leaves no listener behind. */
function drainedOrClosed(socket: TLSSocket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, 1000);
    socket.once('drain', done);
    socket.once('close', done);
  });
}

async function mqttSession(port: number, secureContext: SecureContext, clientId: string): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, secureContext, servername: 'localhost' });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  socket.write(connectFrame(clientId));
  const [connack] = (await once(socket, 'data')) as [Buffer];
  if (connack[0] !== 0x20 || connack[3] !== 0) throw new Error(`${clientId}: CONNACK ${connack.toString('hex')}`);
  return socket;
}

// ---- brokers ------------------------------------------------------------------------------------------------
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

async function startFleetgate(dataDir: string, ids: FloodIdentities): Promise<Broker> {
  // FLOOD_FLEETGATE_ENV='{"FLEETGATE_PUBLISH_RATE":"100000000"}' runs the same flood with other limits.
  // FLOOD_NODE_FLAGS='--initial-old-space-size=32' runs it with V8 flags that NODE_OPTIONS does not take.
  const nodeFlags = (process.env.FLOOD_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
  const serve = await startGatewayProcess({ dataDir, env: JSON.parse(process.env.FLOOD_FLEETGATE_ENV ?? '{}') as Record<string, string>, nodeFlags });
  const names = ['fleetgate_mqtt_publish_dropped_total', 'fleetgate_mqtt_publish_throttled_total', 'fleetgate_mqtt_deliveries_dropped_total', 'fleetgate_mqtt_flow_disconnects_total'];
  return {
    name: 'fleetgate',
    port: Number(new URL(serve.mqttUrl).port),
    pid: serve.pid,
    async counters() {
      const response = await apiRequest<string>({ baseUrl: serve.apiUrl.replace('localhost', '127.0.0.1'), ca: ids.ca, token: ids.adminToken }, 'GET', '/metrics');
      const text = response.body as unknown as string;
      return Object.fromEntries(names.map((name) => [name.replace(/^fleetgate_mqtt_|_total$/g, ''), counterValue(text, name)]));
    },
    async stop() {
      await serve.stop();
    },
  };
}

async function startMosquitto(dataDir: string, dir: string): Promise<Broker> {
  const port = await freePort();
  const pki = join(dataDir, 'pki');
  writeFileSync(join(dir, 'acl'), ['pattern readwrite devices/%u/#', '', 'user backend', 'topic read devices/#', '', 'user stalled', 'topic read devices/#', ''].join('\n'));
  writeFileSync(
    join(dir, 'mosquitto.conf'),
    [
      'user root',
      'per_listener_settings false',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      `listener ${port} 127.0.0.1`,
      `cafile ${join(pki, 'ca.crt')}`,
      `certfile ${join(pki, 'server.crt')}`,
      `keyfile ${join(pki, 'server.key')}`,
      'tls_version tlsv1.2',
      'require_certificate true',
      'use_identity_as_username true',
      'allow_anonymous false',
      `acl_file ${join(dir, 'acl')}`,
      '', // max_queued_messages: the default (1000)
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  for (let attempt = 0; ; attempt++) {
    const ok = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(true)).listen(port, '127.0.0.1', () => probe.close(() => resolve(false)));
    });
    if (ok) break;
    if (attempt > 100 || child.exitCode !== null) throw new Error(`mosquitto did not start: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    name: 'mosquitto',
    port,
    pid: child.pid!,
    counters: async () => undefined,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

// ---- the scenario -----------------------------------------------------------------------------------------
interface FloodResult {
  broker: string;
  abusers: number;
  seconds: number;
  acceptedPerSecond: number;
  deliveredPerSecond: number;
  fleetSent: number;
  fleetDelivered: number;
  fleetLatencyMs: { p50: number; p99: number; max: number };
  abuserDisconnects: number;
  idleRssMiB: number;
  peakRssMiB: number;
  endRssMiB: number;
  brokerAlive: boolean;
  counters: Record<string, number> | undefined;
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!);

async function runFlood(broker: Broker, ids: FloodIdentities, abusers: number): Promise<FloodResult> {
  const contexts = new Map<string, SecureContext>();
  const contextOf = (id: string) => {
    let context = contexts.get(id);
    if (context === undefined) {
      const credential = ids.credentials[id]!;
      context = createSecureContext({ ca: ids.ca, key: credential.key, cert: credential.cert });
      contexts.set(id, context);
    }
    return context;
  };
  const before = await broker.counters();
  const idleRss = rssBytes(broker.pid);
  let peakRss = 0;
  const sampler = setInterval(() => {
    try {
      peakRss = Math.max(peakRss, rssBytes(broker.pid));
    } catch {
      /* the broker died: recorded below */
    }
  }, 200);

  // The backend reads everything; the stalled subscriber never reads after SUBACK.
  let deliveredFromAbusers = 0;
  let fleetDelivered = 0;
  const latencies: number[] = [];
  const backend = await mqttSession(broker.port, contextOf('backend'), 'backend');
  backend.on(
    'data',
    publishReader((topic, payload) => {
      if (topic.startsWith('devices/abuser-')) deliveredFromAbusers++;
      else if (payload.length >= 8) {
        fleetDelivered++;
        latencies.push(Date.now() - payload.readDoubleBE(0));
      }
    }),
  );
  backend.write(subscribeFrame('devices/#'));
  const stalled = await mqttSession(broker.port, contextOf('stalled'), 'stalled');
  stalled.write(subscribeFrame('devices/#'));
  await new Promise((resolve) => setTimeout(resolve, 200));
  stalled.pause();

  const fleet = await Promise.all(Array.from({ length: fleetSize }, (_, i) => mqttSession(broker.port, contextOf(`fleet-${i + 1}`), `fleet-${i + 1}`)));
  let fleetSent = 0;
  const fleetTimer = setInterval(() => {
    for (const [i, socket] of fleet.entries()) {
      if (socket.destroyed) continue;
      const payload = Buffer.alloc(16);
      payload.writeDoubleBE(Date.now(), 0);
      socket.write(publishFrame(`devices/fleet-${i + 1}/telemetry`, payload));
      fleetSent++;
    }
  }, 500);

  const until = Date.now() + seconds * 1000;
  let accepted = 0;
  let disconnects = 0;
  const abuse = async (id: string) => {
    const batch = Buffer.concat(Array.from({ length: 100 }, () => publishFrame(`devices/${id}/telemetry`, Buffer.alloc(100, 0x61))));
    while (Date.now() < until) {
      let socket: TLSSocket;
      try {
        socket = await mqttSession(broker.port, contextOf(id), id);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      while (Date.now() < until && !socket.destroyed) {
        // Counted once the kernel took the bytes, i.e. the broker side could read them.
        if (!socket.write(batch, (error) => !error && (accepted += 100))) {
          await drainedOrClosed(socket);
        } else await new Promise((resolve) => setImmediate(resolve));
      }
      if (socket.destroyed && Date.now() < until) {
        disconnects++;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      socket.destroy();
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: abusers }, (_, i) => abuse(`abuser-${i + 1}`)));
  const elapsed = (Date.now() - started) / 1000;
  clearInterval(fleetTimer);
  const deliveredDuringFlood = deliveredFromAbusers;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  clearInterval(sampler);
  let endRss = 0;
  let alive = true;
  try {
    endRss = rssBytes(broker.pid);
  } catch {
    alive = false;
  }
  const after = await broker.counters().catch(() => undefined);
  for (const socket of [backend, stalled, ...fleet]) socket.destroy();
  latencies.sort((a, b) => a - b);
  const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
  return {
    broker: broker.name,
    abusers,
    seconds: Math.round(elapsed * 10) / 10,
    acceptedPerSecond: Math.round(accepted / elapsed),
    deliveredPerSecond: Math.round(deliveredDuringFlood / elapsed),
    fleetSent,
    fleetDelivered,
    fleetLatencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? NaN },
    abuserDisconnects: disconnects,
    idleRssMiB: mib(idleRss),
    peakRssMiB: mib(peakRss),
    endRssMiB: mib(endRss),
    brokerAlive: alive,
    counters: before && after ? Object.fromEntries(Object.entries(after).map(([name, value]) => [name, value - (before[name] ?? 0)])) : undefined,
  };
}

/** `mosquitto -h` prints its version with the usage, and exits 3. */
function mosquittoVersion(): string {
  try {
    return execFileSync('/usr/sbin/mosquitto', ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (error) {
    return /mosquitto version (\S+)/.exec(String((error as { stdout?: unknown }).stdout ?? ''))?.[1] ?? 'unknown';
  }
}

// ---- main ---------------------------------------------------------------------------------------------------
const dir = { path: mkdtempSync(join(tmpdir(), 'fleetgate-flood-')) };
try {
  const devices = [...Array.from({ length: maxAbusers }, (_, i) => `abuser-${i + 1}`), ...Array.from({ length: fleetSize }, (_, i) => `fleet-${i + 1}`)];
  const ids = await prepareIdentities(join(dir.path, 'data'), devices, ['backend', 'stalled']);
  const results: FloodResult[] = [];
  const starters = { fleetgate: () => startFleetgate(join(dir.path, 'data'), ids), mosquitto: () => startMosquitto(join(dir.path, 'data'), dir.path) };
  for (const start of brokerNames.map((name) => starters[name as keyof typeof starters])) {
    for (const abusers of abuserCounts) {
      // A fresh broker per run: nothing left over from the previous flood.
      const broker = await start();
      try {
        const result = await runFlood(broker, ids, abusers);
        results.push(result);
        console.log(JSON.stringify(result));
      } finally {
        await broker.stop();
      }
    }
  }
  const machine = {
    cpu: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1],
    cpus: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    node: process.version,
    mosquitto: mosquittoVersion(),
  };
  const env = process.env.FLOOD_FLEETGATE_ENV;
  const file = env === undefined ? 'results-flood.json' : 'results-flood-custom.json';
  writeFileSync(join(import.meta.dirname, file), JSON.stringify({ date: new Date().toISOString(), machine, seconds, fleetSize, fleetgateEnv: env ?? null, results }, null, 2) + '\n');
  console.log('\n| broker | abusers | accepted msg/s | delivered msg/s | fleet delivered | fleet latency p50 / p99 ms | RSS idle → peak MiB | abuser disconnects | dropped (fleetgate counters) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const dropped = r.counters ? `ingress ${r.counters.publish_dropped}, outbound ${r.counters.deliveries_dropped}, cut ${r.counters.flow_disconnects}` : '—';
    console.log(`| ${r.broker} | ${r.abusers} | ${r.acceptedPerSecond} | ${r.deliveredPerSecond} | ${r.fleetDelivered}/${r.fleetSent} | ${r.fleetLatencyMs.p50} / ${r.fleetLatencyMs.p99} | ${r.idleRssMiB} → ${r.peakRssMiB} | ${r.abuserDisconnects} | ${dropped} |`);
  }
} finally {
  rmSync(dir.path, { recursive: true, force: true });
}
