import { join } from 'node:path';
import { type BrokerName, type BrokerUnderTest, freePort, launchPrefix, type Pinning, startChildBroker } from './broker-under-test.ts';
import type { MosquittoTls } from './mosquitto-process.ts';
import type { NodeRuntime } from './node-runtimes.ts';

const entry = join(import.meta.dirname, 'minimal-aedes-broker.ts');

/**
 * bench/minimal-aedes-broker.ts as a child process on a fixed free port (a restart comes back where its devices
 * reconnect), run by the given Node. It needs no native module, so every runtime runs it from the checkout.
 */
export async function startMinimalAedes(options: { name: BrokerName; runtime: NodeRuntime; tls: MosquittoTls; serviceNames: readonly string[]; pinning: Pinning }): Promise<BrokerUnderTest> {
  const port = await freePort();
  return startChildBroker({
    name: options.name,
    kind: 'aedes',
    runtime: options.runtime.version,
    port,
    argv: [...launchPrefix(options.pinning), options.runtime.nodeBinary, '--import', 'tsx', entry, String(port), options.tls.cafile, options.tls.certfile, options.tls.keyfile, options.serviceNames.join(',')],
    cwd: join(import.meta.dirname, '..'),
    startTimeoutMs: 30_000,
  });
}
