import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'fleetgate.js');
const execFileAsync = promisify(execFile);

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly mqttPort: number;
  readonly apiPort: number;
  readonly stdout: () => string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** A fleetgate server process (serve, provisioning or broker) that printed its ready line. */
export interface FleetgateProcess {
  readonly child: ChildProcess;
  /** The "fleetgate ready …" line. */
  readonly readyLine: string;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Sends SIGTERM (SIGKILL with `kill`) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `fleetgate <args>` and waits for its "fleetgate ready" line. */
export async function startFleetgateProcess(args: readonly string[], extraEnv: Record<string, string> = {}): Promise<FleetgateProcess> {
  const child = spawn(process.execPath, [bin, ...args], {
    env: { ...process.env, FLEETGATE_LOG_LEVEL: 'warn', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const readyLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fleetgate ${args[0]} not ready after 30 s\nstdout: ${stdout}\nstderr: ${stderr}`)), 30_000);
    const check = () => {
      const line = stdout.split('\n').find((l) => l.startsWith('fleetgate ready '));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(line);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fleetgate ${args[0]} exited with ${code}\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });
  return {
    child,
    readyLine,
    stdout: () => stdout,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, 'exit') as Promise<[number | null]>;
      child.kill(signal);
      // A process that cannot shut down cleanly (a test broke it on purpose) must not hang the suite.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface ServeProcess extends FleetgateProcess {
  readonly mqttPort: number;
  readonly apiPort: number;
}

/** Starts `fleetgate serve` on free ports and waits for its "fleetgate ready" line. */
export async function startServeProcess(dataDir: string, extraEnv: Record<string, string> = {}): Promise<ServeProcess> {
  const started = await startFleetgateProcess(['serve', '--data-dir', dataDir, '--host', '127.0.0.1', '--mqtt-port', '0', '--api-port', '0', '--hostname', 'localhost'], extraEnv);
  const match = /mqtt=mqtts:\/\/[^:]+:(\d+) api=https:\/\/[^:]+:(\d+)/.exec(started.readyLine);
  if (!match) throw new Error(`unexpected ready line: ${started.readyLine}`);
  return { ...started, mqttPort: Number(match[1]), apiPort: Number(match[2]) };
}

/** Runs a CLI subcommand to completion; never throws on a non-zero exit. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}
