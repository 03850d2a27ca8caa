import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCrl } from '../../core/pki/crl.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { createRevocationPki, issuedAt, type RevocationPki } from './revocation-pki.ts';

/**
 * The device CA's CRL as relying parties read it: OpenSSL 3 (`openssl crl`, `openssl verify -crl_check`)
 * and Node's TLS (RFC 7468 §9: the PEM label must be `X509 CRL`).
 */
const execFileAsync = promisify(execFile);
const dayMs = 24 * 60 * 60 * 1000;

async function openssl(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('openssl', args, { timeout: 15_000 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, output: (failed.stdout ?? '') + (failed.stderr ?? '') };
  }
}

describe('device CA CRL read by OpenSSL', () => {
  const dir = makeTempDir('fleetgate-crl-');
  const crlPem = join(dir.path, 'crl.pem');
  const crlDer = join(dir.path, 'crl.der');
  // OpenSSL checks CRL and certificate times at -attime, a day into the CRL's week.
  const attime = String(Math.floor((issuedAt.getTime() + 2 * dayMs) / 1000));
  let pki: RevocationPki;
  let pem: string;

  beforeAll(async () => {
    pki = await createRevocationPki(dir.path);
    const crl = await createCrl({
      issuer: pki.deviceCa,
      entries: [
        { serial: pki.revoked.serial, revokedAt: new Date(issuedAt.getTime() + dayMs), reason: 'keyCompromise' },
        { serial: '4a0000000000000000000000000000aa', revokedAt: new Date(issuedAt.getTime() + dayMs), reason: 'unspecified' },
      ],
      crlNumber: 7n,
      thisUpdate: new Date(issuedAt.getTime() + dayMs),
      nextUpdate: new Date(issuedAt.getTime() + 8 * dayMs),
    });
    pem = crl.pem;
    writeFileSync(crlPem, crl.pem);
    writeFileSync(crlDer, new Uint8Array(crl.der));
  });
  afterAll(() => dir.remove());

  it('lists the revoked serial (upper-case hex) with its reason and the CRL number', async () => {
    const result = await openssl(['crl', '-in', crlPem, '-noout', '-text']);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain(`Serial Number: ${pki.revoked.serial.toUpperCase()}`);
    expect(result.output).toMatch(new RegExp(`Serial Number: ${pki.revoked.serial.toUpperCase()}\\s+Revocation Date: [^\\n]+\\n\\s+CRL entry extensions:\\s+X509v3 CRL Reason Code:\\s+Key Compromise`));
    expect(result.output).not.toContain(pki.good.serial.toUpperCase());
    expect(result.output).toMatch(/X509v3 CRL Number:\s+7\n/);
    expect(result.output).toContain('X509v3 Authority Key Identifier');
    expect(result.output).toContain('Issuer: CN = fleetgate test device CA');
  });

  it('parses the DER form and verifies its signature with the device CA', async () => {
    const der = await openssl(['crl', '-inform', 'DER', '-in', crlDer, '-noout', '-text']);
    expect(der.code, der.output).toBe(0);
    expect(der.output).toContain(`Serial Number: ${pki.revoked.serial.toUpperCase()}`);
    const signature = await openssl(['crl', '-in', crlPem, '-CAfile', pki.files.deviceCa, '-noout']);
    expect(signature.code, signature.output).toBe(0);
    expect(signature.output).toContain('verify OK');
  });

  it('has no empty crlEntryExtensions SEQUENCE (Extensions is SIZE (1..MAX))', async () => {
    const result = await openssl(['asn1parse', '-inform', 'DER', '-in', crlDer]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).not.toMatch(/l= +0 cons: +SEQUENCE/);
  });

  it('makes `openssl verify -crl_check` refuse the revoked certificate and accept the other', async () => {
    const verify = (cert: string) => openssl(['verify', '-attime', attime, '-crl_check', '-CAfile', pki.files.chain, '-CRLfile', crlPem, cert]);
    const revoked = await verify(pki.files.revoked);
    expect(revoked.code).not.toBe(0);
    expect(revoked.output).toContain('certificate revoked');
    const good = await verify(pki.files.good);
    expect(good.code, good.output).toBe(0);
    expect(good.output).toContain(`${pki.files.good}: OK`);
  });

  it('is refused by -crl_check once past nextUpdate (the CRL must be republished)', async () => {
    const late = String(Math.floor((issuedAt.getTime() + 10 * dayMs) / 1000));
    const result = await openssl(['verify', '-attime', late, '-crl_check', '-CAfile', pki.files.chain, '-CRLfile', crlPem, pki.files.good]);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('CRL has expired');
  });

  it('loads into a Node TLS context', () => {
    expect(() => createSecureContext({ ca: pki.root.certificate.toString('pem'), crl: pem })).not.toThrow();
    expect(() => createSecureContext({ ca: pki.root.certificate.toString('pem'), crl: pem.replaceAll('X509 CRL', 'CRL') })).toThrow();
  });
});
