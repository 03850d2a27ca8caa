import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr, generateKeyPair, x509 } from '../../core/index.ts';
import { runCli, startServeProcess } from '../helpers/fleetgate-process.ts';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

const run = promisify(execFile);

/**
 * CA keys in a PKCS#11 token (README "CA keys in an HSM"), against a throwaway SoftHSM2 token: `fleetgate
 * init --key-store` generates the CA keys inside it, every signing path (enrollment, renewal, CRL, OCSP, CA
 * rotation) goes through it, no CA key is ever on disk outside the token's storage, and a token that goes
 * away makes issuing fail with PKI_KEY_STORE_UNAVAILABLE until it is back, without a restart.
 */
let token: SoftHsmToken;
let gw: TestGateway;
const scratch = makeTempDir();
const path = (name: string) => join(scratch.path, name);

beforeAll(async () => {
  token = createSoftHsmToken();
  // The PKCS#11 module reads SOFTHSM2_CONF when this process first initialises it.
  Object.assign(process.env, token.env);
  gw = await startTestGateway({}, {
    beforeStart: async (dataDir) => {
      const init = await runCli(['init', '--data-dir', dataDir, '--key-store', token.storeUri, '--json'], token.env);
      expect(init.code, init.stderr).toBe(0);
    },
  });
});
afterAll(async () => {
  await gw?.close();
  token?.remove();
  scratch.remove();
});

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)]));
}

describe('CA keys in a SoftHSM token', () => {
  it('records token URIs as the CAs key_refs and leaves no CA key file in pki/', async () => {
    const pki = join(gw.dataDirPath, 'pki');
    for (const name of ['root-ca.key', 'device-ca.key', 'claim-ca.key']) expect(() => statSync(join(pki, name))).toThrow();
    const refs = JSON.parse(readFileSync(join(pki, 'ca-keys.json'), 'utf8')) as Record<string, string>;
    expect(Object.values(refs)).toHaveLength(3);
    for (const ref of Object.values(refs)) expect(ref).toMatch(/^pkcs11:token=fleetgate-test;object=fleetgate-[a-z-]+-[0-9a-f]{8};type=private\?module-path=/);
    const cas = await gw.gateway.dataDir.registry.listCertificateAuthorities();
    expect(cas.filter((ca) => ca.keyRef !== null).map((ca) => ca.keyRef).sort()).toEqual(Object.values(refs).sort());
    // Nothing in the URI or the file is a secret: the PIN comes from the environment only.
    expect(readFileSync(join(pki, 'ca-keys.json'), 'utf8')).not.toContain(token.pin);
  });

  it('signs with keys that the token refuses to export', async () => {
    const { CryptoKey: TokenKey } = await import('node-webcrypto-p11');
    const { authorities } = gw.gateway.dataDir;
    for (const role of ['device', 'claim'] as const) {
      const { credential } = await authorities.issuer(role);
      expect(credential.privateKey).toBeInstanceOf(TokenKey);
      expect(credential.privateKey.extractable).toBe(false);
      await expect(globalThis.crypto.subtle.exportKey('pkcs8', credential.privateKey)).rejects.toThrow();
    }
  });

  it('enrolls and renews a device, and its certificates chain to CAs whose keys are in the token', async () => {
    const device = await gw.createDevice('hsm-sensor-1');
    const leaf = new X509Certificate(device.cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '');
    expect(leaf.verify(new X509Certificate(gw.gateway.dataDir.pki.pem.deviceCa).publicKey)).toBe(true);

    const keys = await generateKeyPair();
    const renewed = await gw.api<{ certificate: string }>('POST', '/v1/renew', { credential: device, body: { csr: await createCsr(keys, 'hsm-sensor-1') } });
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(201);
    expect(new X509Certificate(renewed.body.certificate).verify(new X509Certificate(gw.gateway.dataDir.pki.pem.deviceCa).publicKey)).toBe(true);

    const client = await gw.connect('hsm-sensor-1', device);
    await client.endAsync();
  });

  it('signs the CRL and OCSP answers in the token (verified by OpenSSL)', async () => {
    const revoked = await gw.createDevice('hsm-revoked');
    const good = await gw.createDevice('hsm-good');
    expect((await gw.api('POST', '/v1/devices/hsm-revoked/revoke', { token: true, body: { reason: 'keyCompromise' } })).status).toBe(200);

    writeFileSync(path('api-ca.pem'), gw.ca);
    const { stdout: crl } = await run('curl', ['-sS', '--cacert', path('api-ca.pem'), `https://localhost:${gw.apiPort}/v1/pki/crl`], { encoding: 'buffer' });
    writeFileSync(path('device.crl'), crl);
    writeFileSync(path('device-ca.pem'), gw.gateway.dataDir.pki.pem.deviceCa);
    writeFileSync(path('root.pem'), gw.gateway.dataDir.pki.pem.root);
    const { stdout: text, stderr } = await run('openssl', ['crl', '-inform', 'DER', '-in', path('device.crl'), '-noout', '-text', '-CAfile', path('device-ca.pem')]);
    expect(stderr).toMatch(/verify OK/);
    expect(text).toContain(revoked.serial.toUpperCase());

    for (const [name, credential, expected] of [['revoked', revoked, 'revoked'], ['good', good, 'good']] as const) {
      writeFileSync(path(`${name}.pem`), credential.cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '');
      const answer = await run('openssl', [
        'ocsp', '-issuer', path('device-ca.pem'), '-cert', path(`${name}.pem`), '-url', `https://localhost:${gw.apiPort}/v1/pki/ocsp`,
        '-CAfile', path('root.pem'), '-VAfile', path('device-ca.pem'),
      ]);
      expect(answer.stdout, answer.stderr).toContain(`${path(`${name}.pem`)}: ${expected}`);
      expect(answer.stderr).toMatch(/Response verify OK/);
    }
  });

  it('creates the keys of a rotated CA in the token too, and issues with them', async () => {
    const prepared = await gw.api<{ ca: { id: string } }>('POST', '/v1/pki/cas/rotate', { token: true, body: { role: 'device', stage: 'prepare' } });
    expect(prepared.status, JSON.stringify(prepared.body)).toBe(200);
    const activated = await gw.api('POST', '/v1/pki/cas/rotate', { token: true, body: { role: 'device', stage: 'activate' } });
    expect(activated.status, JSON.stringify(activated.body)).toBe(200);
    const next = (await gw.gateway.dataDir.registry.listCertificateAuthorities()).find((ca) => ca.id === prepared.body.ca.id);
    expect(next?.keyRef).toMatch(new RegExp(`^pkcs11:token=fleetgate-test;object=fleetgate-ca-${prepared.body.ca.id};type=private\\?`));
    const device = await gw.createDevice('hsm-after-rotation');
    const leaf = new x509.X509Certificate(device.cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '');
    expect(await leaf.verify({ publicKey: await new x509.X509Certificate(next!.pem).publicKey.export() })).toBe(true);
  });

  it('keeps every CA private key out of the data directory', () => {
    const serverKey = join(gw.dataDirPath, 'pki', 'server.key');
    for (const file of filesUnder(gw.dataDirPath)) {
      // The TLS server key is the only private key fleetgate keeps in a file (README "CA keys in an HSM").
      if (file === serverKey) continue;
      expect(readFileSync(file).toString('latin1'), file).not.toMatch(/PRIVATE KEY/);
    }
    // …and it is the server certificate's key, not a CA's.
    const server = new X509Certificate(readFileSync(join(gw.dataDirPath, 'pki', 'server.crt')));
    expect(server.ca).toBe(false);
  });

  it('refuses to issue with PKI_KEY_STORE_UNAVAILABLE and an audit entry while the token is away, keeps admitting devices, and recovers when it is back', async () => {
    const existing = await gw.createDevice('hsm-existing');
    token.unplug();
    try {
      await expect(gw.createDevice('hsm-while-away')).rejects.toMatchObject({ code: 'PKI_KEY_STORE_UNAVAILABLE' });
      await gw.waitForAudit({ action: 'device.register' }, (entry) => entry.result === 'refused' && entry.code === 'PKI_KEY_STORE_UNAVAILABLE');
      const viaApi = await gw.api<{ code: string }>('POST', '/v1/devices', { token: true, body: { id: 'hsm-api-away', csr: await createCsr(await generateKeyPair(), 'hsm-api-away') } });
      expect(viaApi.status).toBe(503);
      expect(viaApi.body.code).toBe('PKI_KEY_STORE_UNAVAILABLE');
      // The broker needs no CA key: devices that have certificates keep connecting.
      const client = await gw.connect('hsm-existing', existing);
      await client.endAsync();
    } finally {
      token.plugIn();
    }
    const after = await gw.createDevice('hsm-after-replug');
    expect(after.serial).toMatch(/^[0-9a-f]+$/);
  });
});

describe('fleetgate serve with a token (real processes)', () => {
  it('logs neither key material nor the PIN, and enrolls a device through the API with the PIN from a file', async () => {
    const dataDir = path('served');
    const init = await runCli(['init', '--data-dir', dataDir, '--key-store', token.storeUri.replace('object=fleetgate', 'object=served'), '--json'], token.env);
    expect(init.code, init.stderr).toBe(0);
    // The PIN from a file this time (FLEETGATE_PKCS11_PIN empty, so not used).
    writeFileSync(path('pin'), `${token.pin}\n`, { mode: 0o600 });
    const serve = await startServeProcess(dataDir, { SOFTHSM2_CONF: token.env.SOFTHSM2_CONF!, FLEETGATE_PKCS11_PIN: '', FLEETGATE_PKCS11_PIN_FILE: path('pin'), FLEETGATE_LOG_LEVEL: 'debug' });
    try {
      const created = await runCli(['device', 'create', '--id', 'hsm-cli-1', '--out', path('hsm-cli-1'), '--data-dir', dataDir, '--api', `https://localhost:${serve.apiPort}`, '--json']);
      expect(created.code, created.stderr).toBe(0);
    } finally {
      await serve.stop();
    }
    const logs = init.stdout + init.stderr + serve.stdout() + serve.stderr();
    expect(logs).not.toMatch(/PRIVATE KEY/);
    expect(logs).not.toContain(token.pin);
    for (const file of filesUnder(dataDir)) {
      if (file.endsWith(join('pki', 'server.key'))) continue;
      expect(readFileSync(file).toString('latin1'), file).not.toMatch(/PRIVATE KEY/);
    }
  });

  it('refuses a wrong PIN with PKI_KEY_STORE_UNAVAILABLE, without echoing it', async () => {
    const init = await runCli(['init', '--data-dir', path('wrong-pin'), '--key-store', token.storeUri, '--json'], { ...token.env, FLEETGATE_PKCS11_PIN: '999999' });
    expect(init.code).not.toBe(0);
    expect(JSON.parse(init.stderr)).toMatchObject({ code: 'PKI_KEY_STORE_UNAVAILABLE' });
    expect(init.stderr).not.toContain('999999');
  });
});

describe('fleetgate init --import-keys-to (real processes)', () => {
  it('moves the CA key files into the token after a verified test signature, then deletes them', async () => {
    const dataDir = path('imported');
    const init = await runCli(['init', '--data-dir', dataDir, '--json']);
    expect(init.code, init.stderr).toBe(0);
    const caBefore = readFileSync(join(dataDir, 'pki', 'ca.crt'), 'utf8');

    const moved = await runCli(['init', '--data-dir', dataDir, '--import-keys-to', token.storeUri.replace('object=fleetgate', 'object=imported'), '--json'], token.env);
    expect(moved.code, moved.stderr).toBe(0);
    const { imported } = JSON.parse(moved.stdout) as { imported: { role: string; from: string; to: string }[] };
    expect(imported.map((key) => key.from).sort()).toEqual(['claim-ca.key', 'device-ca.key', 'root-ca.key']);
    for (const key of imported) {
      expect(key.to).toMatch(/^pkcs11:token=fleetgate-test;object=imported-/);
      expect(() => statSync(join(dataDir, 'pki', key.from))).toThrow();
    }
    expect(moved.stdout + moved.stderr).not.toContain(token.pin);

    // The same CAs, now signing in the token: a device enrolled through the API chains to the old root.
    const serve = await startServeProcess(dataDir, token.env);
    try {
      const created = await runCli(['device', 'create', '--id', 'hsm-imported-1', '--out', path('hsm-imported-1'), '--data-dir', dataDir, '--api', `https://localhost:${serve.apiPort}`, '--json']);
      expect(created.code, created.stderr).toBe(0);
    } finally {
      await serve.stop();
    }
    expect(readFileSync(join(dataDir, 'pki', 'ca.crt'), 'utf8')).toBe(caBefore);
    const device = new X509Certificate(readFileSync(join(path('hsm-imported-1'), 'device.crt')));
    expect(device.verify(new X509Certificate(readFileSync(join(dataDir, 'pki', 'device-ca.crt'))).publicKey)).toBe(true);
    for (const file of filesUnder(dataDir)) {
      if (file.endsWith(join('pki', 'server.key'))) continue;
      expect(readFileSync(file).toString('latin1'), file).not.toMatch(/PRIVATE KEY/);
    }

    const again = await runCli(['init', '--data-dir', dataDir, '--import-keys-to', token.storeUri, '--json'], token.env);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ imported: [] });
  });
});
