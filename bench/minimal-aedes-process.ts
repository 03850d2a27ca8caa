import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { type BrokerName, type BrokerUnderTest, freePort, launchPrefix, type Pinning, waitForPort } from './broker-under-test.ts';
import type { MosquittoTls } from './mosquitto-process.ts';
import type { NodeRuntime } from './node-runtimes.ts';

const entry = join(import.meta.dirname, 'minimal-aedes-broker.ts');

/**
 * bench/minimal-aedes-broker.ts as a child process on a fixed free port (a restart comes back where its devices
 * reconnect), run by the given Node. It needs no native module, so every runtime runs it from the checkout.
 */
export async function startMinimalAedes(options: { name: BrokerName; runtime: NodeRuntime; tls: MosquittoTls; serviceNames: readonly string[]; pinning: Pinning }): Promise<BrokerUnderTest> {
  const port = await freePort();
  const prefix = launchPrefix(options.pinning);
  let stderr = '';
  let stopping = false;
  const launch = async (): Promise<ChildProcess> => {
    const argv = [...prefix, options.runtime.nodeBinary, '--import', 'tsx', entry, String(port), options.tls.cafile, options.tls.certfile, options.tls.keyfile, options.serviceNames.join(',')];
    const child = spawn(argv[0] ?? options.runtime.nodeBinary, argv.slice(1), { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const exited = once(child, 'exit').then(() => {
      throw new Error(`${options.name} exited at start:\n${stderr}`);
    });
    await Promise.race([waitForPort('127.0.0.1', port, 30_000), exited]);
    exited.catch(() => {});
    child.once('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`${options.name} (pid ${child.pid}) exited unexpectedly: code ${code}, signal ${signal}\n${stderr}\n`);
    });
    return child;
  };
  const stopChild = async (child: ChildProcess) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    stopping = true;
    child.kill('SIGTERM');
    await once(child, 'exit');
    stopping = false;
  };
  let child = await launch();
  return {
    name: options.name,
    kind: 'aedes',
    runtime: options.runtime.version,
    host: '127.0.0.1',
    port,
    get pid() {
      return child.pid ?? 0;
    },
    pids: () => [child.pid ?? 0],
    async restart() {
      const started = performance.now();
      await stopChild(child);
      child = await launch();
      return { downMs: performance.now() - started };
    },
    async stop() {
      await stopChild(child);
      stopping = true;
    },
  };
}
