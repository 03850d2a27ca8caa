// Certificate issuance per second with the device CA's key in a file (in memory) and in a SoftHSM2 token
// (README "CA keys in an HSM"): `node --import tsx bench/issuance-key-store.ts [--seconds 5] [--concurrency 1,16]`.
// SoftHSM runs in this process, so its figure is the lower bound of what a network HSM adds.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type CaCredential, createIssuingCa, createRootCa, generateKeyPair, issueCertificate, systemClock, x509 } from '../core/index.ts';
import { fileKeyStore, type KeyStore } from '../provisioning/index.ts';

const softHsmModule = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'].find((path) => existsSync(path));

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '1,16' }, json: { type: 'string' } } });
const seconds = Number(values.seconds);
const concurrencies = values.concurrency.split(',').map(Number);

const dir = { path: mkdtempSync(join(tmpdir(), 'fleetgate-bench-hsm-')), remove: () => rmSync(dir.path, { recursive: true, force: true }) };
if (softHsmModule === undefined) throw new Error('softhsm2 is not installed (apt-get install softhsm2)');
const tokens = join(dir.path, 'tokens');
mkdirSync(tokens);
const conf = join(dir.path, 'softhsm2.conf');
writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
process.env.SOFTHSM2_CONF = conf;
process.env.FLEETGATE_PKCS11_PIN = '246810';
execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--pin', '246810', '--so-pin', '2468100'], { stdio: 'ignore' });
const { pkcs11KeyStore } = await import('../provisioning/pkcs11-key-store.ts');

async function deviceCa(store: KeyStore): Promise<CaCredential> {
  const root = await createRootCa({ commonName: 'bench root', clock: systemClock, keys: await store.generate() });
  const pending = await store.generate();
  const ca = await createIssuingCa({ issuer: root, commonName: 'bench device CA', clock: systemClock, keys: pending });
  await pending.save(`bench-device-${Date.now()}`);
  return ca;
}

const leaf = await x509.PublicKey.create((await generateKeyPair()).publicKey);
async function measure(issuer: CaCredential, concurrency: number): Promise<number> {
  let issued = 0;
  const until = Date.now() + seconds * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = 0; Date.now() < until; i++) {
        await issueCertificate({ issuer, publicKey: leaf, profile: { kind: 'device', deviceId: `bench-${worker}-${i}`, validityDays: 30 }, clock: systemClock });
        issued++;
      }
    }),
  );
  return issued / (Number(process.hrtime.bigint() - started) / 1e9);
}

const token = pkcs11KeyStore(`pkcs11:token=bench;object=bench?module-path=${softHsmModule}`);
const stores: [string, KeyStore][] = [['file', fileKeyStore(join(dir.path, 'pki'))], ['softhsm', token]];
mkdirSync(join(dir.path, 'pki'));
const results: { store: string; concurrency: number; perSecond: number }[] = [];
try {
  const cas = new Map<string, CaCredential>();
  for (const [name, store] of stores) cas.set(name, await deviceCa(store));
  // Warm-up, then alternate the stores so that neither gets the quieter moment.
  for (const [name] of stores) await measure(cas.get(name)!, 1);
  for (const concurrency of concurrencies) {
    for (const [name] of stores) {
      const perSecond = await measure(cas.get(name)!, concurrency);
      results.push({ store: name, concurrency, perSecond: Math.round(perSecond) });
      console.log(`${name.padEnd(8)} concurrency ${String(concurrency).padStart(3)}: ${Math.round(perSecond)} certificates/s`);
    }
  }
} finally {
  await token.close();
  dir.remove();
}
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify({ node: process.version, seconds, results }, null, 2) + '\n');
