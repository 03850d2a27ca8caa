import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

/**
 * Time from spawning `node bin/fleetgate.js serve` to its "fleetgate ready" line, on a data directory that
 * already exists (CA keys, admin token, SQLite registry): what a restart costs, and what a reconnect
 * storm waits for. First-start PKI creation is measured once, apart. The process is stopped (SIGTERM)
 * and waited for between runs. `--source` runs cli/main.ts through tsx instead of the compiled build/,
 * for comparison with the way the CLI used to start. Besides wall time, the CPU time the process had used
 * when it printed the line (user + system, /proc/PID/stat, 10 ms ticks): on a loaded machine the wall time
 * mostly measures the wait for a core, the CPU time what the start itself costs.
 *
 * Run: node --import tsx bench/startup.ts [--runs 15] [--source] [--json]
 * The node that runs this script is the one measured (process.execPath).
 */
const { values: flags } = parseArgs({ options: { runs: { type: 'string', default: '15' }, source: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
const runs = Number(flags.runs);
const root = join(import.meta.dirname, '..');
const entry = flags.source ? ['--import', 'tsx', join(root, 'cli', 'main.ts')] : [join(root, 'bin', 'fleetgate.js')];

/** User + system CPU of a live process, in ms (fields 14 and 15 of /proc/PID/stat, in clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function timeToReady(dataDir: string): Promise<{ wallMs: number; cpuMs: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [...entry, 'serve', '--data-dir', dataDir, '--host', '127.0.0.1', '--mqtt-port', '0', '--api-port', '0', '--hostname', 'localhost'], {
    env: { ...process.env, FLEETGATE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  const elapsed = await new Promise<{ wallMs: number; cpuMs: number }>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('fleetgate ready ')) resolve({ wallMs: performance.now() - started, cpuMs: cpuMs(child.pid ?? 0) });
    });
    child.once('exit', (code) => reject(new Error(`fleetgate serve exited with ${code} before ready:\n${stdout}`)));
  });
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
  return elapsed;
}

const dataDir = mkdtempSync(join(tmpdir(), 'fleetgate-startup-'));
try {
  const firstStart = await timeToReady(dataDir);
  // One more start outside the count: the OS file cache and the data directory settle after the first.
  await timeToReady(dataDir);
  const times: { wallMs: number; cpuMs: number }[] = [];
  for (let run = 0; run < runs; run++) times.push(await timeToReady(dataDir));
  const quantile = (values: number[], q: number) => Math.round([...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(q * values.length))] ?? NaN);
  const wall = times.map((time) => time.wallMs);
  const at = (q: number) => quantile(wall, q);
  const result = {
    node: process.version,
    entry: flags.source ? 'tsx cli/main.ts' : 'bin/fleetgate.js (build/)',
    runs,
    firstStartWithPkiMs: Math.round(firstStart.wallMs),
    readyMs: { median: at(0.5), min: at(0), p90: at(0.9), max: at(1) },
    cpuToReadyMs: { median: quantile(times.map((time) => time.cpuMs), 0.5), min: quantile(times.map((time) => time.cpuMs), 0) },
    loadAverage: execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' '),
  };
  if (flags.json) console.log(JSON.stringify(result));
  else
    console.log(
      `${result.node} ${result.entry}: ready in median ${result.readyMs.median} ms (min ${result.readyMs.min}, p90 ${result.readyMs.p90}, max ${result.readyMs.max}) over ${runs} starts; CPU to ready median ${result.cpuToReadyMs.median} ms (min ${result.cpuToReadyMs.min}); first start with PKI creation ${result.firstStartWithPkiMs} ms; load ${result.loadAverage}`,
    );
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
