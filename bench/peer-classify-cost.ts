import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { classifyPeer, createPeerClassifier, trustedIssuers } from '../core/index.ts';
import type { BenchCredentials } from './device-credentials.ts';

/**
 * Main-thread CPU of reading who a TLS peer is, per new connection, the way broker/mqtt-listener.ts does it:
 * `classifyPeer` (core/peer-identity.ts) against `createPeerClassifier` (core/peer-classifier.ts), on real
 * mTLS connections of the bench devices, alternating connection by connection so that both see the same
 * machine. The classifier is warmed first (every device connected once), as for a fleet that reconnects.
 *
 *   node --import tsx bench/peer-classify-cost.ts --data /tmp/fg-data [--connections 2000] [--resume]
 * (`--data` is a data directory made by bench/profile-gateway.ts or the suite: bench-credentials.json.)
 */
const { values } = parseArgs({ options: { data: { type: 'string', default: '/tmp/fleetgate-profile-data' }, connections: { type: 'string', default: '2000' }, resume: { type: 'boolean', default: false } } });
const credentials = JSON.parse(readFileSync(join(values.data, 'bench-credentials.json'), 'utf8')) as BenchCredentials;
const pki = join(values.data, 'pki');
const issuers = trustedIssuers((pem) => new X509Certificate(pem), { device: [readFileSync(join(pki, 'device-ca.crt'), 'utf8')], claim: [readFileSync(join(pki, 'claim-ca.crt'), 'utf8')], manufacturer: [] });
const classifier = createPeerClassifier({ parse: (der) => new X509Certificate(der) });

// Thread CPU in µs (process.threadCpuUsage is Node 23.9+; the process figure is the same here, one busy thread).
const cpuNow = () => {
  const usage = (process as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage?.() ?? process.cpuUsage();
  return usage.user + usage.system;
};
const spent = { classifyPeer: 0, classifier: 0 };
const counts = { classifyPeer: 0, classifier: 0 };
let connection = 0;
let warming = true;
const server = createServer(
  { cert: readFileSync(credentials.pki.certfile), key: readFileSync(credentials.pki.keyfile), ca: [readFileSync(join(pki, 'device-ca.crt')), credentials.ca], requestCert: true, rejectUnauthorized: false },
  (socket: TLSSocket) => {
    const way = warming ? 'classifier' : connection++ % 2 === 0 ? 'classifyPeer' : 'classifier';
    const before = cpuNow();
    const { credential } = way === 'classifyPeer' ? classifyPeer(socket, issuers) : classifier.classify(socket, issuers);
    const cost = cpuNow() - before;
    if (credential.kind !== 'device') throw new Error(`unexpected ${credential.kind}`);
    if (!warming) {
      spent[way] += cost;
      counts[way]++;
    }
    socket.end();
  },
);
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as { port: number }).port;
// --resume: each device resumes the TLS session of its previous connection (TLS 1.3 tickets), as the suite's resumed connects.
const tickets = new Map<string, Buffer>();
const connectOnce = (index: number) =>
  new Promise<void>((resolve) => {
    const device = credentials.devices[index % credentials.devices.length];
    if (device === undefined) throw new Error('no devices');
    const ticket = values.resume ? tickets.get(device.id) : undefined;
    const socket = connect({ host: '127.0.0.1', port, ca: credentials.ca, cert: device.cert, key: device.key, servername: 'localhost', ...(ticket ? { session: ticket } : {}) });
    socket.on('session', (session: Buffer) => tickets.set(device.id, session));
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
  });
for (let i = 0; i < credentials.devices.length; i++) await connectOnce(i);
warming = false;
for (let i = 0; i < Number(values.connections); i++) await connectOnce(i);
server.close();
const perCall = (way: keyof typeof spent) => Math.round((spent[way] / Math.max(1, counts[way])) * 10) / 10;
process.stdout.write(`${JSON.stringify({ node: process.version, resumed: values.resume, connections: counts, cpuUsPerConnection: { classifyPeer: perCall('classifyPeer'), classifier: perCall('classifier') } })}\n`);
