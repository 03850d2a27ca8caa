import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDataDir } from '../cli/data-dir.ts';
import { createCsr, generateKeyPair, privateKeyToPem, systemClock } from '../core/index.ts';
import { registerDevice } from '../provisioning/index.ts';

/**
 * Memory per idle mTLS connection, by layer (bench/RESULTS.md "Memory per idle connection"). N idle
 * connections (CONNECT sent, CONNACK received for the MQTT layers) against three servers, each in a fresh
 * child process (bench/memory-server.ts) that reports its own `process.memoryUsage()` after a full GC:
 * - `tls`: bare node:tls with the listener's options and client-certificate request (TLSSocket + OpenSSL);
 * - `aedes`: that plus a bare aedes handling the session (aedes Client, mqtt-packet parser);
 * - `fleetgate`: `fleetgate serve` (cli/serve.ts) in the server process.
 * Server on CPU 0, clients (bench/memory-clients.ts, raw frames) on CPU 1. Per connection = (after − before) / N.
 *
 *   node --import tsx bench/memory-per-connection.ts [--connections 2000] [--modes tls,aedes,fleetgate]
 *        [--node /path/to/node] [--snapshot /tmp/dir]   (heap snapshots before/after, per mode)
 */

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length - 1; i++) if (process.argv[i]?.startsWith('--')) args.set(process.argv[i]!.slice(2), process.argv[i + 1]!);
const connections = Number(args.get('connections') ?? 2000);
const modes = (args.get('modes') ?? 'tls,aedes,fleetgate').split(',');
const serverNode = args.get('node') ?? process.execPath;
const snapshotDir = args.get('snapshot');
const pin = args.get('pin') !== 'no';

type Usage = NodeJS.MemoryUsage;
type Reply = { kind: 'ready'; port: number } | { kind: 'memory'; usage: Usage } | { kind: 'snapshot'; path: string } | { kind: 'connected'; connected: number; failed: number };

function launch(cpu: number, node: string, script: string, argv: string[], flags: string[]): ChildProcess {
  const command = [node, ...flags, '--import', 'tsx', join(import.meta.dirname, script), ...argv];
  const full = pin ? ['taskset', '-c', String(cpu), ...command] : command;
  return spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$@"', 'bash', ...full], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: join(import.meta.dirname, '..') });
}

function reply<K extends Reply['kind']>(child: ChildProcess, kind: K): Promise<Extract<Reply, { kind: K }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: Reply) => {
      if (message.kind !== kind) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(message as Extract<Reply, { kind: K }>);
    };
    const onExit = (code: number | null) => reject(new Error(`child exited with ${code} while waiting for ${kind}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function measure(server: ChildProcess): Promise<Usage> {
  server.send({ kind: 'measure' });
  return (await reply(server, 'memory')).usage;
}

async function snapshot(server: ChildProcess, path: string): Promise<void> {
  server.send({ kind: 'snapshot', path });
  await reply(server, 'snapshot');
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per "type:name" (constructor, closure name, system type) in a .heapsnapshot. */
function heapByName(path: string): Map<string, { count: number; bytes: number }> {
  const heap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const fields = heap.snapshot.meta.node_fields;
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((field) => fields.indexOf(field)) as [number, number, number];
  const types = heap.snapshot.meta.node_types[0];
  const totals = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < heap.nodes.length; i += width) {
    const type = types[heap.nodes[i + typeAt]!]!;
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '' : heap.strings[heap.nodes[i + nameAt]!]!.slice(0, 60);
    const key = `${type}:${name}`;
    const entry = totals.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += heap.nodes[i + sizeAt]!;
    totals.set(key, entry);
  }
  return totals;
}

/** The names that grew most between two snapshots, per connection. */
function heapGrowth(beforePath: string, afterPath: string, per: number, top = 40): string[] {
  const before = heapByName(beforePath);
  const after = heapByName(afterPath);
  return [...after]
    .map(([key, value]) => ({ key, count: value.count - (before.get(key)?.count ?? 0), bytes: value.bytes - (before.get(key)?.bytes ?? 0) }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, top)
    .map((entry) => `${(entry.bytes / per).toFixed(0).padStart(6)} B/conn  ${(entry.count / per).toFixed(2).padStart(6)} /conn  ${entry.key}`);
}

const dir = mkdtempSync(join(tmpdir(), 'fleetgate-memory-'));
try {
  const dataDir = join(dir, 'data');
  const opened = await openDataDir({ path: dataDir, hostnames: ['localhost'] });
  const devices: { id: string; key: string; cert: string }[] = [];
  for (let i = 0; i < connections; i++) {
    const id = `mem-${i + 1}`;
    // A key per device: the registry refuses a public key bound to another identity.
    const keys = await generateKeyPair();
    const record = await registerDevice({ registry: opened.registry, authorities: opened.authorities, clock: systemClock }, { id, csr: await createCsr(keys, id), actor: 'bench' });
    devices.push({ id, key: await privateKeyToPem(keys.privateKey), cert: record.pem + opened.pki.pem.deviceCa });
  }
  await opened.registry.close();
  const credentials = join(dir, 'credentials.json');
  writeFileSync(credentials, JSON.stringify({ ca: opened.pki.pem.root, devices }));

  const rows: Record<string, unknown>[] = [];
  for (const mode of modes) {
    const server = launch(0, serverNode, 'memory-server.ts', [mode, dataDir], ['--expose-gc']);
    try {
      const { port } = await reply(server, 'ready');
      await new Promise((resolve) => setTimeout(resolve, 500));
      const before = await measure(server);
      if (snapshotDir) await snapshot(server, join(snapshotDir, `${mode}-before.heapsnapshot`));
      const clients = launch(1, process.execPath, 'memory-clients.ts', [credentials, String(port), mode === 'tls' ? 'tls' : 'mqtt', '32'], []);
      const { connected, failed } = await reply(clients, 'connected');
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const after = await measure(server);
      if (snapshotDir) await snapshot(server, join(snapshotDir, `${mode}-after.heapsnapshot`));
      if (snapshotDir) for (const line of heapGrowth(join(snapshotDir, `${mode}-before.heapsnapshot`), join(snapshotDir, `${mode}-after.heapsnapshot`), Math.max(1, connected))) console.log(`  ${mode} heap: ${line}`);
      clients.send({ kind: 'close' });
      await once(clients, 'exit');
      const per = (field: keyof Usage) => Math.round(((after[field] - before[field]) / Math.max(1, connected) / 1024) * 100) / 100;
      const row = { mode, node: serverNode === process.execPath ? process.version : serverNode, connected, failed, rssKib: per('rss'), heapUsedKib: per('heapUsed'), heapTotalKib: per('heapTotal'), externalKib: per('external'), arrayBuffersKib: per('arrayBuffers'), rssBeforeMiB: Math.round(before.rss / 1048576), rssAfterMiB: Math.round(after.rss / 1048576) };
      rows.push(row);
      console.log(JSON.stringify(row));
    } finally {
      server.kill('SIGKILL');
      if (server.exitCode === null) await once(server, 'exit');
    }
  }
  console.log('\n| layer | connections | RSS KiB/conn | V8 heap used KiB/conn | external KiB/conn | arrayBuffers KiB/conn |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.mode} | ${r.connected} | ${r.rssKib} | ${r.heapUsedKib} | ${r.externalKib} | ${r.arrayBuffersKib} |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
