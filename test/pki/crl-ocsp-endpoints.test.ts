import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/** The live CRL and OCSP endpoints, checked with openssl as an outside relying party would. */
const run = promisify(execFile);
let gw: ApiUnderTest;
let apiPort: number;
const dir = makeTempDir();
const path = (name: string) => join(dir.path, name);

beforeAll(async () => {
  gw = await startApiUnderTest();
  apiPort = await gw.listen();
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

describe('CRL and OCSP', () => {
  it('lists a revoked device in the CRL and answers OCSP revoked for it and good for another', async () => {
    const revoked = await gw.createDevice('crl-revoked');
    const good = await gw.createDevice('crl-good');
    await gw.dataDir.registry.setDeviceStatus({ id: 'crl-revoked', status: 'revoked', reason: 'keyCompromise', audit: { actor: 'test', action: 'device.revoke', result: 'ok' } });
    await gw.events.publish({ type: 'device.status', deviceId: 'crl-revoked', status: 'revoked' });

    const crl = await fetchDer('/v1/pki/crl');
    writeFileSync(path('device.crl'), crl);
    const { stdout: text } = await run('openssl', ['crl', '-inform', 'DER', '-in', path('device.crl'), '-noout', '-text']);
    expect(text).toContain(revoked.serial.toUpperCase());
    expect(text).toMatch(/Key Compromise/);
    expect(text).not.toContain(good.serial.toUpperCase());

    const { pki } = gw.dataDir;
    writeFileSync(path('device-ca.pem'), pki.pem.deviceCa);
    writeFileSync(path('root.pem'), pki.pem.root);
    for (const [name, credential, expected] of [['revoked', revoked, 'revoked'], ['good', good, 'good']] as const) {
      writeFileSync(path(`${name}.pem`), credential.cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '');
      const { stdout, stderr } = await run('openssl', [
        'ocsp', '-issuer', path('device-ca.pem'), '-cert', path(`${name}.pem`), '-url', `https://localhost:${apiPort}/v1/pki/ocsp`,
        '-CAfile', path('root.pem'), '-VAfile', path('device-ca.pem'),
      ]);
      expect(stdout, stderr).toContain(`${path(`${name}.pem`)}: ${expected}`);
      expect(stderr).toMatch(/Response verify OK/);
    }
  });

  it('answers a malformed OCSP request with an OCSP malformedRequest response and an audit entry', async () => {
    const response = await gw.api<string>('POST', '/v1/pki/ocsp', { body: 'not der', contentType: 'application/ocsp-request' });
    expect(response.status).toBe(200);
    await gw.waitForAudit({ action: 'pki.ocsp', result: 'refused' }, (e) => e.code === 'OCSP_REQUEST_MALFORMED');
  });
});

async function fetchDer(pathname: string): Promise<Buffer> {
  const { stdout } = await run('curl', ['-sS', '--cacert', writeCa(), `https://localhost:${apiPort}${pathname}`], { encoding: 'buffer' });
  return stdout;
}

function writeCa(): string {
  writeFileSync(path('api-ca.pem'), gw.ca);
  return path('api-ca.pem');
}
