import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import type { ClientCredential } from '../helpers/registry-fixtures.ts';

/**
 * CSRs made by `openssl req` with a weak digest (SHA-1, MD5) are refused at enrollment with
 * PKI_CSR_SIGNATURE_ALGORITHM_REFUSED and an audit entry, and use no claim; the same key with SHA-256
 * enrolls. A SHA-1 signature proves possession of the key no less, but a collision-prone hash in the one
 * signature a device makes is not something to accept, and MD5 was refused only by accident before (the
 * verifier could not compute it: PKI_CSR_SIGNATURE_INVALID). The claim certificate is a TLS client
 * certificate, so enrollment goes over the API's HTTPS listener (no broker).
 */
const run = promisify(execFile);
const dir = makeTempDir('fleetgate-csr-');
const file = (name: string) => join(dir.path, name);
let gw: ApiUnderTest;
let claim: ClientCredential & { claimId: string };

beforeAll(async () => {
  gw = await startApiUnderTest();
  claim = await gw.issueClaim({ maxUses: 10 });
  await run('openssl', ['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', file('ec.key')]);
  await run('openssl', ['genrsa', '-out', file('rsa.key'), '2048']);
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

async function opensslCsr(serial: string, key: 'ec' | 'rsa', digest: string): Promise<string> {
  await run('openssl', ['req', '-new', '-key', file(`${key}.key`), `-${digest}`, '-subj', `/CN=${serial}`, '-out', file(`${serial}.csr`)]);
  return readFileSync(file(`${serial}.csr`), 'utf8');
}

describe('CSR signature algorithms', () => {
  it.each([
    ['csr-sha1-ec', 'ec', 'sha1', { algorithm: 'ECDSA', hash: 'SHA-1' }],
    ['csr-sha1-rsa', 'rsa', 'sha1', { algorithm: 'RSASSA-PKCS1-v1_5', hash: 'SHA-1' }],
    ['csr-md5-rsa', 'rsa', 'md5', { algorithm: '1.2.840.113549.1.1.4' }], // md5WithRSAEncryption: WebCrypto has no name for it
  ] as const)('refuses %s with PKI_CSR_SIGNATURE_ALGORITHM_REFUSED, audited, no claim use', async (serial, key, digest, refused) => {
    const csr = await opensslCsr(serial, key, digest);
    const usesBefore = (await gw.dataDir.registry.getClaim(claim.claimId))?.uses;
    const answer = await gw.api<{ code: string; message: string }>('POST', '/v1/enroll', { body: { csr, serial }, credential: claim });
    expect(answer.status, JSON.stringify(answer.body)).toBe(400);
    expect(answer.body.code).toBe('PKI_CSR_SIGNATURE_ALGORITHM_REFUSED');
    expect(answer.body.message).toMatch(/SHA-256/);
    const entry = await gw.waitForAudit({ result: 'refused', action: 'device.enroll' }, (e) => e.code === 'PKI_CSR_SIGNATURE_ALGORITHM_REFUSED' && e.detail?.algorithm === refused.algorithm);
    expect(entry.detail).toMatchObject(refused);
    expect((await gw.dataDir.registry.getClaim(claim.claimId))?.uses).toBe(usesBefore);
    expect(await gw.dataDir.registry.getDevice(serial)).toBeUndefined();
  });

  it('enrolls the same keys signed with SHA-256 and SHA-384', async () => {
    for (const [serial, key, digest] of [['csr-sha256-ec', 'ec', 'sha256'], ['csr-sha384-rsa', 'rsa', 'sha384']] as const) {
      const answer = await gw.api('POST', '/v1/enroll', { body: { csr: await opensslCsr(serial, key, digest), serial }, credential: claim });
      expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    }
  });
});
