import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { ServeConfig } from './config.ts';

/**
 * `fleetgate broker --workers N`: N broker processes on one machine sharing one MQTTS port (node:cluster:
 * the primary accepts and hands each connection to the next worker), so TLS handshakes use every core.
 * Each worker is a full cluster node on Redis (`<broker-id>-<i>`); the primary only supervises: it prints
 * one ready line once every worker listens, restarts a worker that dies, and stops them all on SIGTERM.
 */
export const workerIndexVariable = 'FLEETGATE_BROKER_WORKER';

interface ReadyMessage {
  readonly type: 'fleetgate-ready';
  readonly line: string;
}

export function isBrokerWorker(): boolean {
  return cluster.isWorker && process.env[workerIndexVariable] !== undefined;
}

/** In a worker: tell the primary instead of printing (it prints one line for all). */
export function reportWorkerReady(line: string): void {
  process.send?.({ type: 'fleetgate-ready', line } satisfies ReadyMessage);
}

export async function superviseBrokerWorkers(config: ServeConfig, log: Logger): Promise<void> {
  const ready = new Map<number, string>();
  let stopping = false;
  const start = (index: number): Worker => {
    const worker = cluster.fork({ [workerIndexVariable]: String(index) });
    worker.on('message', (message: ReadyMessage) => {
      if (message?.type !== 'fleetgate-ready') return;
      const first = ready.size < config.workers && !ready.has(index);
      ready.set(index, message.line);
      if (first && ready.size === config.workers) {
        const mqtt = /mqtt=\S+/.exec(message.line)?.[0] ?? '';
        process.stdout.write(`fleetgate ready ${mqtt} broker=${config.brokerId} workers=${config.workers}\n`);
      }
    });
    worker.on('exit', (code, signal) => {
      if (stopping) return;
      log.error({ worker: index, code, signal }, 'broker worker died; starting a new one');
      setTimeout(() => start(index), 1_000);
    });
    return worker;
  };
  for (let index = 1; index <= config.workers; index++) start(index);

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping broker workers');
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
    let left = workers.length;
    if (left === 0) process.exit(0);
    for (const worker of workers) {
      worker.once('exit', () => {
        if (--left === 0) process.exit(0);
      });
      worker.process.kill('SIGTERM');
    }
    setTimeout(() => process.exit(1), 15_000).unref();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
