import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { launchPrefix, type Pinning } from './broker-under-test.ts';
import type { BenchCredentials } from './device-credentials.ts';
import type { LoadWorker } from './load-worker-pool.ts';
import type { WorkerJob, WorkerReply } from './load-worker.ts';

/**
 * The C load generator (bench/loadgen/, epoll + OpenSSL, one thread) behind the same `LoadWorker` interface
 * as the Node worker of load-worker-pool.ts: same jobs, same result shapes (mqtt-load.ts), same reply with the
 * process's own CPU. A Node loader spends more CPU per TLS handshake and per message than the brokers it
 * measures; this one does not, so "the loader was the limit" stops being the likely answer.
 */

const sourceDir = join(import.meta.dirname, 'loadgen');
const buildDir = join(import.meta.dirname, '.build');
export const loadgenBinary = join(buildDir, 'fgload');

/**
 * Compiles bench/loadgen/*.c with the machine's gcc and OpenSSL headers into bench/.build/ (gitignored) when a
 * source is newer than the binary. Throws with the Debian packages to install when gcc or libssl-dev is missing.
 */
export function buildLoadgen(): string {
  const sources = readdirSync(sourceDir).filter((name) => name.endsWith('.c') || name.endsWith('.h'));
  const newest = Math.max(...sources.map((name) => statSync(join(sourceDir, name)).mtimeMs));
  if (existsSync(loadgenBinary) && statSync(loadgenBinary).mtimeMs >= newest) return loadgenBinary;
  const gcc = spawnSync('gcc', ['--version'], { stdio: 'ignore' });
  if (gcc.error !== undefined) throw new Error('gcc not found: the C load generator needs the Debian packages gcc and libssl-dev (apt-get install gcc libssl-dev)');
  mkdirSync(buildDir, { recursive: true });
  // Built under a temporary name and renamed: two test files may build at the same time.
  const partial = `${loadgenBinary}.${process.pid}.tmp`;
  const cFiles = sources.filter((name) => name.endsWith('.c')).map((name) => join(sourceDir, name));
  const compile = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', partial, ...cFiles, '-lssl', '-lcrypto', '-lm'], { encoding: 'utf8' });
  if (compile.status !== 0) {
    rmSync(partial, { force: true });
    if (/openssl\/\w+\.h: No such file|cannot find -l(ssl|crypto)/.test(compile.stderr)) {
      throw new Error('OpenSSL development files not found: the C load generator needs the Debian package libssl-dev (apt-get install libssl-dev)');
    }
    throw new Error(`building bench/loadgen failed:\n${compile.stderr}`);
  }
  renameSync(partial, loadgenBinary);
  return loadgenBinary;
}

/** The identity file fgload reads at start (bench/loadgen/net.c, identities_load): length-prefixed PEM blocks. */
export function identityFileText(credentials: BenchCredentials): string {
  const bytes = (text: string) => Buffer.byteLength(text, 'utf8');
  const parts = [`ca ${bytes(credentials.ca)}\n${credentials.ca}\n`];
  const identity = (kind: string, id: { id: string; cert: string; key: string }) => {
    if (!/^[\x21-\x7e]+$/.test(id.id)) throw new Error(`identity id ${JSON.stringify(id.id)} cannot be passed to the C load generator`);
    parts.push(`${kind} ${id.id} ${bytes(id.cert)} ${bytes(id.key)}\n${id.cert}${id.key}\n`);
  };
  identity('service', credentials.service);
  for (const device of credentials.devices) identity('device', device);
  return parts.join('');
}

const integer = (name: string, value: number) => {
  if (!Number.isFinite(value)) throw new Error(`${name} must be a finite number, got ${value}`);
  return `${name}=${Math.trunc(value)}`;
};

/** One job as the line fgload reads: `kind key=value ...` (bench/loadgen/README.md). */
export function jobLine(job: WorkerJob, ca: string): string {
  const target = (t: { host: string; port: number; ca: string }) => {
    // The CA is loaded once at start; a job for another trust root would silently verify against the wrong one.
    if (t.ca !== ca) throw new Error('the C load generator verifies servers against the credentials CA only; this job names another CA');
    if (!/^[\w.:-]+$/.test(t.host)) throw new Error(`unsupported host ${JSON.stringify(t.host)}`);
    return [`host=${t.host}`, integer('port', t.port)];
  };
  const range = (devices: [number, number]) => [integer('from', devices[0]), integer('to', devices[1])];
  switch (job.kind) {
    case 'connect':
      return ['connect', ...target(job.target), ...range(job.devices), integer('count', job.count), integer('concurrency', job.concurrency), `resume=${job.resume ? 1 : 0}`].join(' ');
    case 'throughput':
      return ['throughput', ...target(job.target), ...range(job.devices), integer('qos', job.qos), integer('durationMs', job.durationMs), integer('payloadBytes', job.payloadBytes), integer('inflight', job.inflight)].join(' ');
    case 'latency':
      return ['latency', ...target(job.target), ...range(job.devices), integer('qos', job.qos), integer('rate', job.ratePerSecond), integer('durationMs', job.durationMs), integer('payloadBytes', job.payloadBytes)].join(' ');
    case 'hold':
      return ['hold', ...target(job.target), ...range(job.devices), integer('concurrency', job.concurrency)].join(' ');
    case 'arm':
      return ['arm', integer('baseMs', job.policy.baseMs), integer('capMs', job.policy.capMs), integer('maxAttempts', job.policy.maxAttempts)].join(' ');
    case 'settle':
      return ['settle', integer('timeoutMs', job.timeoutMs)].join(' ');
    case 'release':
      return 'release';
  }
}

/**
 * Starts fgload (built if needed) pinned and with its file limit raised by launchPrefix; `credentials` is the
 * object or the bench-credentials.json file createBenchCredentials wrote. One job at a time, like the Node worker.
 */
export function startCLoadWorker(credentials: BenchCredentials | string, pinning: Pinning): LoadWorker {
  const binary = buildLoadgen();
  const creds = typeof credentials === 'string' ? (JSON.parse(readFileSync(credentials, 'utf8')) as BenchCredentials) : credentials;
  const dir = mkdtempSync(join(tmpdir(), 'fgload-'));
  const identityFile = join(dir, 'identities');
  writeFileSync(identityFile, identityFileText(creds), { mode: 0o600 });
  const argv = [...launchPrefix(pinning), binary, identityFile];
  const child: ChildProcess = spawn(argv[0] ?? binary, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  let exited = false;
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  child.once('exit', () => {
    exited = true;
    rmSync(dir, { recursive: true, force: true });
  });
  child.stdin?.on('error', () => {}); // a dead child shows up as its 'exit'
  let queue: Promise<unknown> = Promise.resolve();

  const runOne = async <T>(job: WorkerJob) => {
    if (exited) throw new Error('C load generator has exited');
    const line = jobLine(job, creds.ca);
    const reply = await new Promise<WorkerReply>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`C load generator exited with ${code} during ${job.kind}`));
      child.once('exit', onExit);
      waiting.push((text) => {
        child.off('exit', onExit);
        try {
          resolve(JSON.parse(text) as WorkerReply);
        } catch {
          reject(new Error(`C load generator, ${job.kind}: unreadable reply ${text.slice(0, 200)}`));
        }
      });
      child.stdin?.write(`${line}\n`);
    });
    if (!reply.ok) throw new Error(`C load generator, ${job.kind}: ${reply.error}`);
    return { result: reply.result as T, cpuSeconds: reply.cpuSeconds, wallSeconds: reply.wallSeconds };
  };

  return {
    pid: child.pid ?? 0,
    run<T>(job: WorkerJob) {
      // Replies are matched to jobs by order: never two jobs on the pipe at once.
      const next = queue.then(() => runOne<T>(job));
      queue = next.catch(() => {});
      return next;
    },
    async stop() {
      if (exited) return;
      const gone = once(child, 'exit');
      child.stdin?.end(); // fgload exits when stdin closes, releasing held connections
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    },
  };
}
