import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * CPU time of a process (all threads) and of its main thread, from /proc (Linux). For Node the main thread
 * is the one that matters: TLS handshakes, JSON, ASN.1 encoding and SQLite all run there, while WebCrypto
 * signatures run on the libuv pool. process.cpuUsage() cannot see another process, hence /proc.
 */
export interface CpuSample {
  /** Seconds of user + system time, every thread. */
  readonly totalSeconds: number;
  /** Seconds of user + system time, main thread only. */
  readonly mainThreadSeconds: number;
  /** performance.now() when sampled, in seconds. */
  readonly at: number;
}

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** utime + stime (fields 14 and 15) of a /proc stat file, in seconds. */
function statSeconds(path: string): number {
  const stat = readFileSync(path, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks();
}

export function sampleCpu(pid: number): CpuSample {
  return { totalSeconds: statSeconds(`/proc/${pid}/stat`), mainThreadSeconds: statSeconds(`/proc/${pid}/task/${pid}/stat`), at: performance.now() / 1000 };
}

export interface CpuUse {
  /** CPU seconds used in the interval, every thread. */
  readonly cpuSeconds: number;
  /** Average cores busy: cpuSeconds / wall seconds. */
  readonly cores: number;
  /** Share of the wall time the main thread was on a CPU (1 = saturated). */
  readonly mainThreadBusy: number;
}

export function cpuBetween(before: CpuSample, after: CpuSample): CpuUse {
  const wall = Math.max(1e-9, after.at - before.at);
  const cpuSeconds = after.totalSeconds - before.totalSeconds;
  const round = (value: number) => Math.round(value * 1000) / 1000;
  return { cpuSeconds: round(cpuSeconds), cores: round(cpuSeconds / wall), mainThreadBusy: round((after.mainThreadSeconds - before.mainThreadSeconds) / wall) };
}
