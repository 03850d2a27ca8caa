/**
 * Where one enrollment's time goes inside the gateway, stage by stage, in this process with the real code:
 * CSR check, signing, the registry transaction, the whole use-case, a bare audit commit, and reading the
 * peer certificate off a TLS socket (what the broker does for every connection). Each stage runs N times
 * one after another, so per-operation figures are costs, not throughput under contention.
 *
 * Run: node --import tsx bench/enroll-breakdown.ts [--n 500]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { checkCsr, type CheckedCsr, createCsr, credentialOf, generateKeyPair, issueCertificate, systemClock, trustedIssuers } from '../core/index.ts';
import { createCertificateService, createClaim, createRateLimiter, ensureServerCertificate, initialKeyFiles, loadOrCreatePki, openCertificateAuthorities } from '../provisioning/index.ts';
import { openSqliteRegistry, seedDefaults } from '../registry/index.ts';
import { sampleCpu } from './process-cpu.ts';

const { values: flags } = parseArgs({ options: { n: { type: 'string', default: '500' }, out: { type: 'string' } } });
const n = Number(flags.n);
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-breakdown-'));
const log = (line: string) => process.stderr.write(line + '\n');

interface StageCost {
  readonly stage: string;
  readonly n: number;
  /** Wall time per operation: includes fsync waits and WebCrypto work on the libuv pool. */
  readonly wallMs: number;
  /** Main-thread CPU per operation: what caps a single Node process. */
  readonly mainThreadMs: number;
  /** All threads' CPU per operation (main + libuv pool). */
  readonly processCpuMs: number;
}
const stages: StageCost[] = [];

async function stage(name: string, count: number, operation: (index: number) => Promise<unknown> | unknown): Promise<void> {
  for (let i = 0; i < Math.min(20, count); i++) await operation(count + i); // warm the JIT; indices past the measured range
  const before = sampleCpu(process.pid);
  const started = performance.now();
  for (let i = 0; i < count; i++) await operation(i);
  const wall = performance.now() - started;
  const after = sampleCpu(process.pid);
  const round = (value: number) => Math.round(value * 1000) / 1000;
  stages.push({
    stage: name,
    n: count,
    wallMs: round(wall / count),
    mainThreadMs: round(((after.mainThreadSeconds - before.mainThreadSeconds) * 1000) / count),
    processCpuMs: round(((after.totalSeconds - before.totalSeconds) * 1000) / count),
  });
  log(`${name}: ${round(wall / count)} ms/op`);
}

try {
  const pki = await loadOrCreatePki({ dataDir: dir, clock: systemClock });
  const serverPair = await ensureServerCertificate({ dataDir: dir, root: pki.root, hostnames: ['localhost'], clock: systemClock });
  const registry = await openSqliteRegistry({ path: join(dir, 'fleetgate.db'), clock: systemClock });
  await seedDefaults(registry);
  const authorities = await openCertificateAuthorities({ registry, pkiDir: join(dir, 'pki'), initial: pki, initialKeyFiles, clock: systemClock, renewServerCertificate: async () => {} });
  const claim = await createClaim({ registry, authorities, clock: systemClock }, { template: 'default', actor: 'bench' });
  const template = await registry.getTemplate('default');
  if (template === undefined) throw new Error('no default template');

  const total = 4 * (n + 20);
  log(`making ${total} key pairs`);
  const keys = await Promise.all(Array.from({ length: total }, () => generateKeyPair()));
  let nextKey = 0;
  const csrs: string[] = [];

  await stage('device side: createCsr (not on the gateway)', n, async () => void csrs.push(await createCsr(keys[nextKey++ % keys.length]!, 'x')));
  const checked: CheckedCsr[] = [];
  await stage('checkCsr: parse, key type, proof of possession, key hash', n, async (i) => void checked.push(await checkCsr(csrs[i % csrs.length]!)));
  const issued: Awaited<ReturnType<typeof issueCertificate>>[] = [];
  await stage('issueCertificate: build, sign (ECDSA P-256), PEM, hashes', n, async (i) =>
    issued.push(
      await issueCertificate({
        issuer: pki.deviceCa,
        publicKey: checked[i % checked.length]!.publicKey,
        profile: { kind: 'device', deviceId: `stage-${i}`, validityDays: 365, revocation: { crl: 'https://localhost:8443/v1/pki/crl', ocsp: 'https://localhost:8443/v1/pki/ocsp' } },
        clock: systemClock,
      }),
    ),
  );
  await stage('registry.enrollWithClaim: one SQLite transaction (+ audit row, fsync)', n, async (i) => {
    const certificate = issued[i];
    if (certificate === undefined) return; // warm-up rounds: nothing left to record
    await registry.enrollWithClaim({
      claimId: claim.claim.id,
      device: { id: `tx-${i}`, kind: 'device', template: 'default', attributes: {} },
      certificate: { serial: certificate.serial, fingerprint: certificate.fingerprint, publicKeyHash: certificate.publicKeyHash, notBefore: certificate.notBefore, notAfter: certificate.notAfter, pem: certificate.pem },
      requireAllowlist: false,
      allowReenroll: false,
      audit: { actor: 'bench', action: 'device.enroll', result: 'ok', deviceId: `tx-${i}` },
    });
  });
  await stage('registry.appendAudit: one audit row on its own (commit + fsync)', n, (i) => registry.appendAudit({ actor: 'bench', action: 'mqtt.connect', result: 'ok', detail: { i } }));

  const service = createCertificateService({
    registry,
    authorities,
    clock: systemClock,
    revocation: { crl: 'https://localhost:8443/v1/pki/crl', ocsp: 'https://localhost:8443/v1/pki/ocsp' },
    claimRateLimiter: createRateLimiter({ ratePerSecond: 1e9, burst: 1e9 }),
  });
  const claimSerial = claim.claim.certificateSerial;
  const bodies: Uint8Array[] = [];
  for (let i = 0; i < n + 20; i++) bodies.push(new TextEncoder().encode(JSON.stringify({ csr: await createCsr(keys[nextKey++ % keys.length]!, 'x') })));
  await stage('certificateService.enroll: the whole use-case (reads, check, sign, transaction, reply)', n, async (i) => {
    await service.enroll({ claimKey: claimSerial, serial: `uc-${i}`, certificate: new Uint8Array(), body: bodies[i]!, transport: 'mqtt' });
  });

  // What the broker does on every TLS connection to learn who the peer is.
  const server = createServer({ cert: serverPair.cert, key: serverPair.key, ca: [...pki.caBundle], requestCert: true, rejectUnauthorized: false });
  const accepted = new Promise<TLSSocket>((resolve) => server.once('secureConnection', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: pki.pem.root, cert: claim.certificate, key: claim.privateKey });
  const socket = await accepted;
  await stage('TLSSocket.getPeerCertificate(true): chain as JS objects (broker, every connection)', n, () => socket.getPeerCertificate(true));
  const issuers = trustedIssuers((pem) => new X509Certificate(pem), { device: [pki.pem.deviceCa], claim: [pki.pem.claimCa], manufacturer: [] });
  await stage('credentialOf(socket): who the peer is (issuer found by signature among the known CAs)', n, () => credentialOf(socket, issuers));
  client.destroy();
  server.close();
  await registry.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const out = flags.out ?? join(import.meta.dirname, 'results-enroll-breakdown.json');
writeFileSync(out, JSON.stringify({ benchmark: 'enroll-breakdown', date: new Date().toISOString(), node: process.version, n, stages }, null, 2) + '\n');
const width = Math.max(...stages.map((s) => s.stage.length));
process.stdout.write(`${'stage'.padEnd(width)}  wall ms  main ms   cpu ms\n`);
for (const s of stages) process.stdout.write(`${s.stage.padEnd(width)}  ${s.wallMs.toFixed(3).padStart(7)}  ${s.mainThreadMs.toFixed(3).padStart(7)}  ${s.processCpuMs.toFixed(3).padStart(7)}\n`);
process.stdout.write(`wrote ${out}\n`);
