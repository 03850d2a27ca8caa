import { Aedes } from 'aedes';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';
import { writeHeapSnapshot } from 'node:v8';
import { pino } from 'pino';
import { resolveServeConfig } from '../cli/config.ts';
import { startGateway } from '../cli/serve.ts';
import { listenerSecureContext, systemClock } from '../core/index.ts';
import { ensureServerCertificate, loadOrCreatePki } from '../provisioning/index.ts';

/**
 * The server side of bench/memory-per-connection.ts, one of three layers, in a child process that answers
 * over IPC with its own `process.memoryUsage()` (after a full GC) and writes heap snapshots on request:
 * - `tls`: a bare node:tls server with the MQTT listener's TLS options and client-certificate request
 *   (broker/mqtt-listener.ts, core/tls-profile.ts), holding each socket and reading it: TLSSocket + OpenSSL;
 * - `aedes`: the same server handing each socket to a bare aedes (`aedes.handle`): + aedes Client and parser;
 * - `fleetgate`: `fleetgate serve` in this process (cli/serve.ts), SQLite registry, logs off.
 *
 *   node --expose-gc --import tsx bench/memory-server.ts <tls|aedes|fleetgate> <data dir>
 */

const [mode, dataDirArgument] = process.argv.slice(2);
if (mode === undefined || dataDirArgument === undefined || process.send === undefined) throw new Error('usage: fork bench/memory-server.ts <tls|aedes|fleetgate> <data dir>');
/** Narrowed once: closures below do not see the check above. */
const dataDir: string = dataDirArgument;

async function bareServer(handle: (socket: TLSSocket) => void): Promise<number> {
  const pki = await loadOrCreatePki({ dataDir, clock: systemClock });
  const serverPair = await ensureServerCertificate({ dataDir, root: pki.root, hostnames: ['localhost'], clock: systemClock });
  const server = createServer(
    { ...listenerSecureContext({ cert: serverPair.cert, key: serverPair.key, ca: pki.caBundle }), requestCert: true, rejectUnauthorized: false, handshakeTimeout: 10_000, noDelay: true },
    handle,
  );
  server.maxConnections = 100_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function start(): Promise<number> {
  if (mode === 'tls') {
    const held = new Set<TLSSocket>();
    return bareServer((socket) => {
      held.add(socket);
      socket.on('data', () => {});
      socket.on('error', () => {});
      socket.once('close', () => held.delete(socket));
    });
  }
  if (mode === 'aedes') {
    const aedes = await Aedes.createBroker();
    return bareServer((socket) => {
      socket.on('error', () => {});
      aedes.handle(socket);
    });
  }
  const config = resolveServeConfig(
    { dataDir, host: '127.0.0.1', mqttPort: '0', apiPort: '0', hostname: 'localhost' },
    { FLEETGATE_LOG_LEVEL: 'warn', FLEETGATE_MAX_PENDING_HANDSHAKES_PER_SOURCE: '512', FLEETGATE_MAX_CONNECTIONS_PER_SOURCE: '100000', FLEETGATE_CONNECT_RATE: '100000' },
  );
  const gateway = await startGateway(config, pino({ level: 'warn' }));
  return Number(new URL(gateway.mqttUrl.replace('mqtts:', 'https:')).port);
}

const gc = (globalThis as { gc?: () => void }).gc;
const port = await start();
process.on('message', (message: { kind: 'measure' } | { kind: 'snapshot'; path: string }) => {
  for (let i = 0; i < 3; i++) gc?.();
  if (message.kind === 'snapshot') {
    process.send!({ kind: 'snapshot', path: writeHeapSnapshot(message.path) });
    return;
  }
  process.send!({ kind: 'memory', usage: process.memoryUsage() });
});
process.send({ kind: 'ready', port });
