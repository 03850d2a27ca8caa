import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

const checkout = join(import.meta.dirname, '..');

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly mqttUrl: string;
  readonly apiUrl: string;
  /** The last few KiB the gateway wrote to stderr (its warn/error log lines). */
  stderrTail(): string;
  /** SIGTERM, then the exit code (the gateway closes cleanly, which is also when --cpu-prof writes). */
  stop(): Promise<number | null>;
}

/**
 * `fleetgate serve` as a child process on free ports, the way an operator runs it, so its CPU can be
 * measured apart from the load generator's. `node bin/fleetgate.js` is the node process itself (no npx
 * wrapper in between), so the pid is the gateway's.
 */
export async function startGatewayProcess(options: {
  dataDir: string;
  env?: Record<string, string>;
  nodeFlags?: string[];
  /** Fixed ports, so a restarted gateway comes back where its devices reconnect; default 0 (free ports). */
  mqttPort?: number;
  apiPort?: number;
  /** argv run in front of node, e.g. `taskset -c 0` (see launchPrefix in broker-under-test.ts); same pid. */
  launchPrefix?: readonly string[];
  /** The node to run (default: this process's), e.g. Node 24 from bench/node-runtimes.ts. */
  nodeBinary?: string;
  /** The directory holding bin/fleetgate.js and a node_modules that works on nodeBinary (default: this checkout). */
  root?: string;
  /** Another fleetgate command line (`provisioning …`, `broker …`) instead of `serve` on the given ports. */
  command?: readonly string[];
}): Promise<GatewayProcess> {
  const command = options.command ?? [
    'serve',
    '--data-dir',
    options.dataDir,
    '--host',
    '127.0.0.1',
    '--mqtt-port',
    String(options.mqttPort ?? 0),
    '--api-port',
    String(options.apiPort ?? 0),
    '--hostname',
    'localhost',
  ];
  const nodeBinary = options.nodeBinary ?? process.execPath;
  const root = options.root ?? checkout;
  const argv = [...(options.launchPrefix ?? []), nodeBinary, ...(options.nodeFlags ?? []), join(root, 'bin', 'fleetgate.js'), ...command];
  // The load generators open every connection from 127.0.0.1: per-source limits (README "Flow control and
  // admission limits") would shed the fleet they simulate, so they are raised to the global ones.
  const env = { ...process.env, FLEETGATE_LOG_LEVEL: 'warn', FLEETGATE_MAX_PENDING_HANDSHAKES_PER_SOURCE: '512', FLEETGATE_MAX_CONNECTIONS_PER_SOURCE: '100000', ...options.env };
  const child = spawn(argv[0] ?? nodeBinary, argv.slice(1), { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  // Bounded: a flood benchmark can make the gateway log a warning per refused packet.
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-16_000)));
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fleetgate serve not ready after 60 s\n${stdout}\n${stderr}`)), 60_000);
    const check = () => {
      const match = /fleetgate ready .*/.exec(stdout)?.[0];
      if (match) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        resolve(match);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fleetgate serve exited with ${code}\n${stdout}\n${stderr}`));
    });
  });
  if (child.pid === undefined) throw new Error('fleetgate serve has no pid');
  return {
    child,
    pid: child.pid,
    mqttUrl: /mqtt=(\S+)/.exec(ready)?.[1] ?? '',
    apiUrl: /api=(\S+)/.exec(ready)?.[1] ?? '',
    stderrTail: () => stderr.slice(-4000),
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      if (code !== 0 && stderr.trim() !== '') process.stderr.write(`gateway stderr:\n${stderr.slice(-4000)}\n`);
      return code;
    },
  };
}
