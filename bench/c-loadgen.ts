/**
 * PLACEHOLDER, to be replaced by the real C load generator's wrapper (issue 16, bench/loadgen/): until then
 * it delegates to the Node load workers (bench/load-worker-pool.ts) behind the interface the real one exports,
 * so the suite (bench/run.ts) can be written and run against it.
 */
import type { Pinning } from './broker-under-test.ts';
import { type LoadWorker, startLoadWorker } from './load-worker-pool.ts';

/** The real one compiles bench/loadgen/ and returns the binary's path; the placeholder has nothing to build. */
export async function buildLoadgen(): Promise<string> {
  return 'node-placeholder';
}

export function startCLoadWorker(credentialsFile: string, pinning: Pinning): LoadWorker {
  return startLoadWorker(credentialsFile, pinning);
}
