import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { launchPrefix, type Pinning } from './broker-under-test.ts';
import type { WorkerJob, WorkerReply } from './load-worker.ts';

/** The parent side of load-worker.ts: child processes, one job at a time each, results with their CPU. */
export interface LoadWorker {
  readonly pid: number;
  run<T>(job: WorkerJob): Promise<{ result: T; cpuSeconds: number; wallSeconds: number }>;
  stop(): Promise<void>;
}

const entry = join(import.meta.dirname, 'load-worker.ts');

export function startLoadWorker(credentialsFile: string, pinning: Pinning): LoadWorker {
  const argv = [...launchPrefix(pinning), process.execPath, '--import', 'tsx', entry, credentialsFile];
  // The IPC channel (fd 3) survives taskset and bash's exec: node finds it through NODE_CHANNEL_FD.
  const child: ChildProcess = spawn(argv[0] ?? process.execPath, argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let exited = false;
  child.once('exit', () => (exited = true));
  return {
    pid: child.pid ?? 0,
    async run<T>(job: WorkerJob) {
      if (exited) throw new Error('load worker has exited');
      const reply = new Promise<WorkerReply>((resolve, reject) => {
        const onExit = (code: number | null) => reject(new Error(`load worker exited with ${code} during ${job.kind}`));
        child.once('exit', onExit);
        child.once('message', (message: WorkerReply) => {
          child.off('exit', onExit);
          resolve(message);
        });
      });
      child.send(job);
      const answer = await reply;
      if (!answer.ok) throw new Error(`load worker, ${job.kind}: ${answer.error}`);
      return { result: answer.result as T, cpuSeconds: answer.cpuSeconds, wallSeconds: answer.wallSeconds };
    },
    async stop() {
      if (exited) return;
      child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await once(child, 'exit');
      clearTimeout(timer);
    },
  };
}
