/**
 * What one TLS handshake costs a bare Node server, apart from anything fleetgate does: a child process runs
 * a plain tls.Server with the gateway's certificates (P-256), this process connects N times one after
 * another, and the server's CPU comes from /proc. Three modes: no client certificate; client certificate
 * requested and verified (what the broker does); the same plus getPeerCertificate(true), which the broker
 * calls on every connection.
 *
 * Run: node --import tsx bench/tls-handshake.ts [--n 1000]
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createSecureContext, createServer } from 'node:tls';
import { parseArgs } from 'node:util';
import { generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../core/index.ts';
import { ensureServerCertificate, loadOrCreatePki } from '../provisioning/index.ts';
import { sampleCpu } from './process-cpu.ts';

type Mode = 'no-client-cert' | 'client-cert' | 'client-cert+getPeerCertificate';
const modes: readonly Mode[] = ['no-client-cert', 'client-cert', 'client-cert+getPeerCertificate'];
const { values: flags } = parseArgs({ options: { n: { type: 'string', default: '1000' }, serve: { type: 'string' }, 'data-dir': { type: 'string' }, out: { type: 'string' } } });

if (flags.serve !== undefined) {
  // Child: the server.
  const mode = flags.serve as Mode;
  const pki = await loadOrCreatePki({ dataDir: flags['data-dir'] ?? '', clock: systemClock });
  const serverPair = await ensureServerCertificate({ dataDir: flags['data-dir'] ?? '', root: pki.root, hostnames: ['localhost'], clock: systemClock });
  const server = createServer(
    { cert: serverPair.cert, key: serverPair.key, ca: [...pki.caBundle], requestCert: mode !== 'no-client-cert', rejectUnauthorized: false, minVersion: 'TLSv1.2' },
    (socket) => {
      if (mode === 'client-cert+getPeerCertificate') socket.getPeerCertificate(true);
      socket.on('error', () => {});
      socket.end();
    },
  );
  server.listen(0, '127.0.0.1', () => process.stdout.write(`port ${(server.address() as AddressInfo).port}\n`));
} else {
  const n = Number(flags.n);
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-tls-'));
  const results: { mode: Mode; serverCpuMs: number; clientCpuMs: number; wallMs: number }[] = [];
  try {
    const pki = await loadOrCreatePki({ dataDir: dir, clock: systemClock });
    const serverPair = await ensureServerCertificate({ dataDir: dir, root: pki.root, hostnames: ['localhost'], clock: systemClock });
    const keys = await generateKeyPair();
    const claim = await issueCertificate({ issuer: pki.claimCa, publicKey: keys.publicKey, profile: { kind: 'claim', claimId: 'bench', notAfter: new Date(Date.now() + 86_400_000) }, clock: systemClock });
    const withCert = createSecureContext({ ca: pki.pem.root, cert: claim.pem + pki.pem.claimCa, key: await privateKeyToPem(keys.privateKey) });
    const withoutCert = createSecureContext({ ca: pki.pem.root });
    for (const mode of modes) {
      const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, '--serve', mode, '--data-dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
      const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
      const port = Number(/port (\d+)/.exec(chunk.toString())?.[1]);
      const secureContext = mode === 'no-client-cert' ? withoutCert : withCert;
      const handshake = () =>
        new Promise<void>((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port, secureContext });
          socket.once('secureConnect', () => {
            socket.end();
            socket.once('close', () => resolve());
          });
          socket.once('error', reject);
        });
      for (let i = 0; i < 50; i++) await handshake();
      const server0 = sampleCpu(child.pid ?? 0);
      const client0 = process.cpuUsage();
      const started = performance.now();
      for (let i = 0; i < n; i++) await handshake();
      const wall = performance.now() - started;
      const client = process.cpuUsage(client0);
      const server1 = sampleCpu(child.pid ?? 0);
      const round = (value: number) => Math.round(value * 1000) / 1000;
      results.push({ mode, serverCpuMs: round(((server1.totalSeconds - server0.totalSeconds) * 1000) / n), clientCpuMs: round((client.user + client.system) / 1000 / n), wallMs: round(wall / n) });
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const out = flags.out ?? join(import.meta.dirname, 'results-tls-handshake.json');
  writeFileSync(out, JSON.stringify({ benchmark: 'tls-handshake', date: new Date().toISOString(), node: process.version, openssl: process.versions.openssl, n, results }, null, 2) + '\n');
  process.stdout.write(`Node ${process.version}, OpenSSL ${process.versions.openssl}, ${n} sequential handshakes per mode (TLS 1.3, P-256)\n`);
  process.stdout.write(`${'mode'.padEnd(32)}server CPU ms  client CPU ms  wall ms\n`);
  for (const r of results) process.stdout.write(`${r.mode.padEnd(32)}${r.serverCpuMs.toFixed(3).padStart(13)}  ${r.clientCpuMs.toFixed(3).padStart(12)}  ${r.wallMs.toFixed(3).padStart(7)}\n`);
  process.stdout.write(`wrote ${out}\n`);
}
