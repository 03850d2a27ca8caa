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

/** Starts `fleetgate serve` on free ports and waits for its "fleetgate ready" line. */
export async function startServeProcess(dataDir: string, extraEnv: Record<string, string> = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [bin, 'serve', '--data-dir', dataDir, '--host', '127.0.0.1', '--mqtt-port', '0', '--api-port', '0', '--hostname', 'localhost'], {
    env: { ...process.env, FLEETGATE_LOG_LEVEL: 'warn', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ready = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fleetgate serve not ready after 30 s\nstdout: ${stdout}\nstderr: ${stderr}`)), 30_000);
    const check = () => {
      const match = stdout.match(/fleetgate ready mqtt=mqtts:\/\/[^:]+:(\d+) api=https:\/\/[^:]+:(\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fleetgate serve exited with ${code}\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });
  return {
    child,
    mqttPort: Number(ready[1]),
    apiPort: Number(ready[2]),
    stdout: () => stdout,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    },
  };
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
