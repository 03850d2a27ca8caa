import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';

/**
 * What every scenario of the side-by-side suite needs from a broker, whichever it is: where devices connect,
 * the pid whose CPU and RSS are the broker's, and a restart on the same port (the reconnect storm).
 */
export interface BrokerUnderTest {
  /** Its column in the tables: `mosquitto`, `fleetgate-node24`, `aedes-node20`, … (bench/run.ts names them). */
  readonly name: BrokerName;
  readonly kind: BrokerKind;
  /** `node --version` of the runtime for the Node brokers. */
  readonly runtime?: string;
  readonly host: string;
  readonly port: number;
  /** The process whose RSS and CPU count as the broker's (for a cluster: the first broker). */
  readonly pid: number;
  /** Every process that makes up the broker side (RSS is summed over them). */
  pids(): readonly number[];
  /** SIGTERM, then start again on the same port; resolves when it accepts connections again. */
  restart(): Promise<{ downMs: number }>;
  stop(): Promise<void>;
}

/** Mosquitto (the reference), fleetgate, and a minimal aedes broker (bench/minimal-aedes-broker.ts). */
export const brokerKinds = ['mosquitto', 'fleetgate', 'aedes'] as const;
export type BrokerKind = (typeof brokerKinds)[number];
/** `mosquitto`, or a Node broker with its runtime: `fleetgate-node24`, `aedes-node20`. */
export type BrokerName = 'mosquitto' | `${'fleetgate' | 'aedes'}-node${number}` | 'fleetgate';

export interface Pinning {
  /** CPU list for `taskset -c`, e.g. "0"; undefined = no pinning. */
  readonly cpus?: string;
  /** Raised in the child with `ulimit -n` before exec (root may raise the hard limit too). */
  readonly openFiles?: number;
}

/**
 * argv prefix that pins a child to CPUs and raises its file limit, then execs the real command with the same
 * pid: `taskset -c 0 bash -c 'ulimit -n N; exec "$0" "$@"' node …`. The arguments reach the command
 * untouched (no shell quoting of our own).
 */
export function launchPrefix(pinning: Pinning): string[] {
  const prefix: string[] = [];
  if (pinning.cpus !== undefined) prefix.push('taskset', '-c', pinning.cpus);
  if (pinning.openFiles !== undefined) prefix.push('bash', '-c', `ulimit -n ${pinning.openFiles} 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$0" "$@"`);
  return prefix;
}

/** A port that was free a moment ago (Mosquitto 2.0 reads `listener 0` as a unix socket path, not "any port"). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls until something accepts TCP connections on host:port. */
export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resident set size of a process in KiB (VmRSS from /proc, Linux). */
export function rssKib(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? NaN);
}

/**
 * A broker that is one child process listening on `port` (Mosquitto, the minimal aedes broker): started with
 * `argv` (pinning prefix included), ready once the port accepts connections, restarted on the same port, its
 * stderr tail in the error when it dies at start and printed when it exits unexpectedly later.
 */
export async function startChildBroker(options: { name: BrokerName; kind: BrokerKind; runtime?: string; port: number; argv: readonly string[]; cwd?: string; startTimeoutMs: number }): Promise<BrokerUnderTest> {
  const [command, ...args] = options.argv;
  if (command === undefined) throw new Error(`${options.name}: no command to start`);
  let stderr = '';
  let stopping = false;
  const launch = async (): Promise<ChildProcess> => {
    const child = spawn(command, args, { ...(options.cwd === undefined ? {} : { cwd: options.cwd }), stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const exited = once(child, 'exit').then(() => {
      throw new Error(`${options.name} exited at start:\n${stderr}`);
    });
    await Promise.race([waitForPort('127.0.0.1', options.port, options.startTimeoutMs), exited]);
    exited.catch(() => {});
    child.once('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`${options.name} (pid ${child.pid}) exited unexpectedly: code ${code}, signal ${signal}\n${stderr}\n`);
    });
    return child;
  };
  /** `final`: stopped for good, so a later exit is never "unexpected". */
  const stopChild = async (child: ChildProcess, final: boolean) => {
    stopping = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    stopping = final;
  };
  let child = await launch();
  return {
    name: options.name,
    kind: options.kind,
    ...(options.runtime === undefined ? {} : { runtime: options.runtime }),
    host: '127.0.0.1',
    port: options.port,
    get pid() {
      return child.pid ?? 0;
    },
    pids: () => [child.pid ?? 0],
    async restart() {
      const started = performance.now();
      await stopChild(child, false);
      child = await launch();
      return { downMs: performance.now() - started };
    },
    stop: () => stopChild(child, true),
  };
}
