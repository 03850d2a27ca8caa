import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { id_pkix_ocsp_nonce, OCSPRequest, type Version } from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { Extension } from '@peculiar/asn1-x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OcspCertStatus, OcspRequestInfo } from '../../core/pki/ocsp.ts';
import { FleetgateError } from '../../core/errors.ts';
import { createOcspErrorResponse, createOcspResponse, parseOcspRequest } from '../../core/pki/ocsp.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { createRevocationPki, issuedAt, type RevocationPki } from './revocation-pki.ts';

/**
 * The OCSP responder core against OpenSSL 3's client: `openssl ocsp` writes the requests, our code parses them
 * and signs the answers as the device CA, and `openssl ocsp -respin` checks signature, nonce and statuses.
 * OpenSSL checks thisUpdate/nextUpdate against the wall clock (OCSP_check_validity), so responses use real time.
 */
const execFileAsync = promisify(execFile);
const revokedAt = new Date(issuedAt.getTime() + 24 * 60 * 60 * 1000 + 567); // milliseconds must not reach the wire

async function openssl(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('openssl', args, { timeout: 15_000 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, output: (failed.stdout ?? '') + (failed.stderr ?? '') };
  }
}

describe('OCSP responder core with the OpenSSL client', () => {
  const dir = makeTempDir('fleetgate-ocsp-');
  const file = (name: string) => join(dir.path, name);
  let pki: RevocationPki;
  let looked: string[];

  beforeAll(async () => {
    pki = await createRevocationPki(dir.path);
  });
  afterAll(() => dir.remove());

  const lookup = (serial: string): OcspCertStatus => {
    looked.push(serial);
    if (serial === pki.revoked.serial) return { status: 'revoked', revokedAt, reason: 'keyCompromise' };
    if (serial === pki.good.serial) return { status: 'good' };
    return { status: 'unknown' };
  };

  /** `openssl ocsp … -reqout`, then parseOcspRequest. `digest` must come before -cert (OpenSSL's rule). */
  async function request(name: string, options: { certs: string[]; issuer?: string; digest?: string; nonce?: boolean }): Promise<OcspRequestInfo> {
    const args = ['ocsp', ...(options.digest ? [`-${options.digest}`] : []), '-issuer', options.issuer ?? pki.files.deviceCa];
    for (const cert of options.certs) args.push('-cert', cert);
    args.push('-reqout', file(name), ...(options.nonce ? [] : ['-no_nonce']));
    const result = await openssl(args);
    expect(result.code, result.output).toBe(0);
    return parseOcspRequest(readFileSync(file(name)));
  }

  async function respond(name: string, info: OcspRequestInfo, nonce = info.nonce): Promise<Uint8Array> {
    looked = [];
    const now = new Date();
    const der = await createOcspResponse({
      issuer: pki.deviceCa,
      requests: info.certIds,
      lookup,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + 60 * 60 * 1000),
      ...(nonce === undefined ? {} : { nonce }),
    });
    writeFileSync(file(name), der);
    return der;
  }

  it('answers revoked and good for SHA-1 CertIDs, signed so that OpenSSL verifies it', async () => {
    const info = await request('req.der', { certs: [pki.files.revoked, pki.files.good] });
    expect(info.nonce).toBeUndefined();
    expect(info.certIds.map((id) => [id.hashAlgorithm, id.serial, id.issuerNameHash.length, id.issuerKeyHash.length])).toEqual([
      ['1.3.14.3.2.26', pki.revoked.serial, 20, 20],
      ['1.3.14.3.2.26', pki.good.serial, 20, 20],
    ]);
    await respond('resp.der', info);
    expect(looked).toEqual([pki.revoked.serial, pki.good.serial]);

    const result = await openssl([
      'ocsp', '-respin', file('resp.der'), '-issuer', pki.files.deviceCa, '-CAfile', pki.files.chain,
      '-cert', pki.files.revoked, '-cert', pki.files.good, '-no_nonce', '-resp_text',
    ]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain('Response verify OK');
    expect(result.output).toContain(`${pki.files.revoked}: revoked`);
    expect(result.output).toContain(`${pki.files.good}: good`);
    expect(result.output).toMatch(/Reason: keyCompromise/);
    expect(result.output).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(result.output).toContain(`Serial Number: ${pki.revoked.serial.toUpperCase()}`);
  });

  it('writes GeneralizedTime in whole seconds (no milliseconds from Date)', async () => {
    const der = await respond('resp-time.der', await request('req-time.der', { certs: [pki.files.revoked] }));
    const text = new TextDecoder('latin1').decode(der);
    const times = text.match(/\d{14}(?:\.\d+)?Z/g) ?? [];
    expect(times.length).toBeGreaterThanOrEqual(4); // producedAt, revocationTime, thisUpdate, nextUpdate
    for (const time of times) expect(time).toMatch(/^\d{14}Z$/);
    expect(text).toContain('20261102000000Z');
  });

  it('answers SHA-256 CertIDs with the same hash algorithm', async () => {
    const info = await request('req-sha256.der', { certs: [pki.files.revoked, pki.files.good], digest: 'sha256' });
    expect(info.certIds.map((id) => [id.hashAlgorithm, id.issuerNameHash.length])).toEqual([
      ['2.16.840.1.101.3.4.2.1', 32],
      ['2.16.840.1.101.3.4.2.1', 32],
    ]);
    await respond('resp-sha256.der', info);
    const result = await openssl([
      'ocsp', '-respin', file('resp-sha256.der'), '-sha256', '-issuer', pki.files.deviceCa, '-CAfile', pki.files.chain,
      '-cert', pki.files.revoked, '-cert', pki.files.good, '-no_nonce',
    ]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain('Response verify OK');
    expect(result.output).toContain(`${pki.files.revoked}: revoked`);
    expect(result.output).toContain(`${pki.files.good}: good`);
  });

  it('echoes the request nonce, and OpenSSL refuses a response with another one', async () => {
    const info = await request('req-nonce.der', { certs: [pki.files.good], nonce: true });
    expect(info.nonce).toHaveLength(16); // OpenSSL's default
    await respond('resp-nonce.der', info);
    // -reqin keeps OpenSSL's own request, nonce included, so it compares the nonces (OCSP_check_nonce).
    const verify = (response: string) =>
      openssl(['ocsp', '-reqin', file('req-nonce.der'), '-respin', file(response), '-issuer', pki.files.deviceCa, '-CAfile', pki.files.chain, '-resp_text']);
    const ok = await verify('resp-nonce.der');
    expect(ok.code, ok.output).toBe(0);
    expect(ok.output).toContain('Response verify OK');
    expect(ok.output).toContain('OCSP Nonce');
    expect(ok.output).toContain('Cert Status: good');
    expect(ok.output).not.toMatch(/nonce verify error|no nonce in response/i);

    await respond('resp-other-nonce.der', info, globalThis.crypto.getRandomValues(new Uint8Array(16)));
    const other = await verify('resp-other-nonce.der');
    expect(other.code).not.toBe(0);
    expect(other.output).toContain('Nonce Verify error');
  });

  it('answers unknown, without a lookup, for a certificate of another issuer', async () => {
    mkdirSync(file('stranger'));
    const stranger = await createRevocationPki(file('stranger'));
    const info = await request('req-other.der', { certs: [stranger.files.good, pki.files.good], issuer: stranger.files.deviceCa });
    await respond('resp-other.der', info);
    expect(looked).toEqual([]); // the second CertID names the stranger CA as issuer too

    const result = await openssl(['ocsp', '-respin', file('resp-other.der'), '-issuer', stranger.files.deviceCa, '-cert', stranger.files.good, '-noverify', '-no_nonce']);
    expect(result.output).toContain(`${stranger.files.good}: unknown`);
  });

  it('answers unknown for a serial the lookup does not know', async () => {
    const info = await request('req-serial.der', { certs: [pki.files.good] });
    const forged = { ...info, certIds: info.certIds.map((id) => ({ ...id, serial: '4a0000000000000000000000000000bb' })) };
    await respond('resp-serial.der', forged);
    expect(looked).toEqual(['4a0000000000000000000000000000bb']);
    const result = await openssl(['ocsp', '-respin', file('resp-serial.der'), '-issuer', pki.files.deviceCa, '-serial', '0x4A0000000000000000000000000000BB', '-CAfile', pki.files.chain, '-no_nonce']);
    expect(result.output).toContain('Response verify OK');
    expect(result.output).toContain('0x4A0000000000000000000000000000BB: unknown');
  });

  /** Fresh OpenSSL requests for one certificate, without and with a nonce, as bytes. */
  async function opensslRequests(): Promise<{ valid: Uint8Array; withNonce: Uint8Array }> {
    await request('req-plain.der', { certs: [pki.files.good] });
    await request('req-plain-nonce.der', { certs: [pki.files.good], nonce: true });
    return { valid: new Uint8Array(readFileSync(file('req-plain.der'))), withNonce: new Uint8Array(readFileSync(file('req-plain-nonce.der'))) };
  }

  it('refuses malformed requests with OCSP_REQUEST_MALFORMED', async () => {
    const { valid, withNonce } = await opensslRequests();
    const unknownExtension = (critical: boolean) => new Extension({ extnID: '1.3.6.1.4.1.99999.1', critical, extnValue: new OctetString(Uint8Array.of(5, 0)) });
    const cases: [string, Uint8Array, RegExp][] = [
      ['empty', new Uint8Array(), /empty/],
      ['garbage', new TextEncoder().encode('POST /v1/pki/ocsp HTTP/1.1'), /not a single DER SEQUENCE/],
      ['a bare SEQUENCE', Uint8Array.of(0x30, 0x00), /not an OCSPRequest/],
      ['truncated', valid.subarray(0, valid.length - 5), /not a single DER SEQUENCE/],
      ['trailing bytes', Uint8Array.of(...valid, 0x00), /not a single DER SEQUENCE/],
      ['a certificate instead of a request', new Uint8Array(pki.good.certificate.rawData), /not an OCSPRequest/],
      ['indefinite length (BER)', Uint8Array.of(0x30, 0x80, ...valid.subarray(2), 0x00, 0x00), /not a single DER SEQUENCE/],
      ['oversized', new Uint8Array(64 * 1024).fill(0x30), /larger than/],
      ['a zero-length nonce', withNonceValue(withNonce, new Uint8Array()), /nonce of 0 octets/],
      ['a 33-octet nonce', withNonceValue(withNonce, new Uint8Array(33).fill(7)), /nonce of 33 octets/],
      ['a nonce that is no OCTET STRING', mutate(withNonce, (r) => (r.tbsRequest.requestExtensions![0]!.extnValue = new OctetString(Uint8Array.of(5, 0)))), /not an OCTET STRING/],
      ['two nonces', mutate(withNonce, (r) => r.tbsRequest.requestExtensions!.push(r.tbsRequest.requestExtensions![0]!)), /two nonce/],
      ['an unknown critical request extension', mutate(valid, (r) => (r.tbsRequest.requestExtensions = [unknownExtension(true)])), /critical extension/],
      ['an unknown critical single extension', mutate(valid, (r) => (r.tbsRequest.requestList[0]!.singleRequestExtensions = [unknownExtension(true)])), /critical extension/],
      ['no CertID', mutate(valid, (r) => (r.tbsRequest.requestList = [])), /empty requestList/],
      ['33 CertIDs', mutate(valid, (r) => (r.tbsRequest.requestList = Array.from({ length: 33 }, () => r.tbsRequest.requestList[0]!))), /more than 32/],
      ['version 2', mutate(valid, (r) => (r.tbsRequest.version = 1 as Version)), /version/],
    ];
    for (const [name, der, reason] of cases) {
      let thrown: unknown;
      try {
        parseOcspRequest(der);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, name).toBeInstanceOf(FleetgateError);
      expect((thrown as FleetgateError).code, name).toBe('OCSP_REQUEST_MALFORMED');
      expect(String((thrown as FleetgateError).detail?.reason), name).toMatch(reason);
    }
  });

  it('accepts a 32-octet nonce (RFC 8954) and ignores unknown non-critical extensions', async () => {
    const { withNonce } = await opensslRequests();
    expect(parseOcspRequest(withNonceValue(withNonce, new Uint8Array(32).fill(7))).nonce).toEqual(new Uint8Array(32).fill(7));
    const extension = new Extension({ extnID: '1.3.6.1.4.1.99999.1', critical: false, extnValue: new OctetString(Uint8Array.of(5, 0)) });
    const info = parseOcspRequest(mutate(withNonce, (r) => r.tbsRequest.requestExtensions!.unshift(extension)));
    expect(info.nonce).toHaveLength(16);
    expect(info.certIds).toHaveLength(1);
  });

  it('writes error responses OpenSSL reads', async () => {
    for (const [status, text] of [
      ['malformedRequest', 'malformedrequest (1)'],
      ['internalError', 'internalerror (2)'],
      ['tryLater', 'trylater (3)'],
      ['unauthorized', 'unauthorized (6)'],
    ] as const) {
      writeFileSync(file(`err-${status}.der`), createOcspErrorResponse(status));
      const result = await openssl(['ocsp', '-respin', file(`err-${status}.der`), '-resp_text', '-noverify']);
      expect(result.output).toContain(`Responder Error: ${text}`);
    }
  });
});

/** OpenSSL's request, parsed, changed by `change` and encoded again: requests OpenSSL will not make. */
function mutate(request: Uint8Array, change: (parsed: OCSPRequest) => unknown): Uint8Array {
  const parsed = AsnConvert.parse(request, OCSPRequest);
  change(parsed);
  return new Uint8Array(AsnConvert.serialize(parsed));
}

function withNonceValue(request: Uint8Array, nonce: Uint8Array): Uint8Array {
  return mutate(request, (parsed) => {
    for (const extension of parsed.tbsRequest.requestExtensions ?? []) {
      if (extension.extnID === id_pkix_ocsp_nonce) extension.extnValue = new OctetString(AsnConvert.serialize(new OctetString(nonce)));
    }
  });
}
