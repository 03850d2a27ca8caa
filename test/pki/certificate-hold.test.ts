import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * A suspension is a certificate hold for relying parties outside fleetgate (RFC 5280 §5.3.1): OCSP answers
 * revoked with reason certificateHold while the device is suspended and good again once it is resumed; the
 * CRL lists the held certificates with that reason and drops them on resume (a complete CRL simply stops
 * listing a released hold). Both say when to look again within the hour. Checked with the openssl client
 * against the live endpoints, through the operator API.
 */
const run = promisify(execFile);
let gw: ApiUnderTest;
let apiPort: number;
const dir = makeTempDir();
const path = (name: string) => join(dir.path, name);
const oneHourMs = 3600_000;

beforeAll(async () => {
  gw = await startApiUnderTest();
  apiPort = await gw.listen();
  const { pki } = gw.dataDir;
  writeFileSync(path('device-ca.pem'), pki.pem.deviceCa);
  writeFileSync(path('root.pem'), pki.pem.root);
  writeFileSync(path('api-ca.pem'), gw.ca);
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

async function ocsp(name: string): Promise<{ status: string; reason: string | undefined; thisUpdate: Date; nextUpdate: Date }> {
  const { stdout, stderr } = await run('openssl', [
    'ocsp', '-issuer', path('device-ca.pem'), '-cert', path(`${name}.pem`), '-url', `https://localhost:${apiPort}/v1/pki/ocsp`,
    '-CAfile', path('root.pem'), '-VAfile', path('device-ca.pem'),
  ]);
  expect(stderr).toMatch(/Response verify OK/);
  const status = new RegExp(`${path(`${name}.pem`)}: (\\w+)`).exec(stdout)?.[1] ?? `none in ${stdout}`;
  return {
    status,
    reason: /Reason: (\w+)/.exec(stdout)?.[1],
    thisUpdate: new Date(/This Update: (.+)/.exec(stdout)?.[1] ?? 'missing'),
    nextUpdate: new Date(/Next Update: (.+)/.exec(stdout)?.[1] ?? 'missing'),
  };
}

async function crlText(): Promise<string> {
  const { stdout: der } = await run('curl', ['-sS', '--fail', '--cacert', path('api-ca.pem'), `https://localhost:${apiPort}/v1/pki/crl`], { encoding: 'buffer' });
  writeFileSync(path('device.crl'), der);
  const { stdout } = await run('openssl', ['crl', '-inform', 'DER', '-in', path('device.crl'), '-noout', '-text']);
  return stdout;
}

/** The CRL entry for `serial` (openssl prints one "Serial Number:" block per revoked certificate). */
const crlEntry = (text: string, serial: string) => text.split('Serial Number: ').find((block) => block.startsWith(serial.toUpperCase()));

async function setStatus(id: string, action: 'suspend' | 'resume' | 'revoke', reason = 'test'): Promise<void> {
  const answer = await gw.api('POST', `/v1/devices/${id}/${action}`, { token: true, body: { reason } });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
}

describe('certificate hold for suspended devices', () => {
  it('OCSP: revoked/certificateHold while suspended, good again after resume', async () => {
    const held = await gw.createDevice('hold-ocsp');
    writeFileSync(path('hold-ocsp.pem'), held.cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '');

    expect(await ocsp('hold-ocsp')).toMatchObject({ status: 'good' });
    await setStatus('hold-ocsp', 'suspend', 'in repair');
    expect(await ocsp('hold-ocsp')).toMatchObject({ status: 'revoked', reason: 'certificateHold' });
    await setStatus('hold-ocsp', 'resume');
    expect(await ocsp('hold-ocsp')).toMatchObject({ status: 'good', reason: undefined });
    // Revocation stays final and keeps its own reason, even from a hold.
    await setStatus('hold-ocsp', 'suspend');
    await setStatus('hold-ocsp', 'revoke', 'keyCompromise');
    expect(await ocsp('hold-ocsp')).toMatchObject({ status: 'revoked', reason: 'keyCompromise' });
  });

  it('CRL: lists a held certificate with reason certificateHold and drops it on resume', async () => {
    const held = await gw.createDevice('hold-crl');
    const other = await gw.createDevice('hold-crl-other');
    await crlText(); // a cached CRL exists before the suspension: the suspension must replace it

    await setStatus('hold-crl', 'suspend');
    const during = await crlText();
    expect(crlEntry(during, held.serial), during).toMatch(/Certificate Hold/);
    expect(crlEntry(during, other.serial)).toBeUndefined();

    await setStatus('hold-crl', 'resume');
    const after = await crlText();
    expect(crlEntry(after, held.serial), after).toBeUndefined();
  });

  it('CRL and OCSP answers tell relying parties to look again within the hour', async () => {
    await gw.createDevice('fresh');
    writeFileSync(path('fresh.pem'), (await gw.dataDir.registry.listCertificates('fresh'))[0]?.pem ?? '');
    const answer = await ocsp('fresh');
    expect(answer.nextUpdate.getTime() - answer.thisUpdate.getTime()).toBeLessThanOrEqual(oneHourMs);

    const text = await crlText();
    const lastUpdate = new Date(/Last Update: (.+)/.exec(text)?.[1] ?? 'missing');
    const nextUpdate = new Date(/Next Update: (.+)/.exec(text)?.[1] ?? 'missing');
    expect(nextUpdate.getTime() - lastUpdate.getTime()).toBeLessThanOrEqual(oneHourMs);
  });

  it('CRL: a revocation replaces the cached CRL at once', async () => {
    const revoked = await gw.createDevice('crl-cached');
    expect(crlEntry(await crlText(), revoked.serial)).toBeUndefined();
    await setStatus('crl-cached', 'revoke', 'keyCompromise');
    expect(crlEntry(await crlText(), revoked.serial)).toMatch(/Key Compromise/);
  });
});
