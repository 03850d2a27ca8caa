import { X509Certificate } from 'node:crypto';
import { forgedLeaf } from '../helpers/forged-certificates.ts';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CaCredential,
  classifyRenewalPeer,
  createIssuingCa,
  createRootCa,
  dayMs,
  deviceUri,
  fixedClock,
  generateKeyPair,
  issueCertificate,
  listenerSecureContext,
  operatorUri,
  privateKeyToPem,
  systemClock,
  type TrustedIssuers,
  trustedIssuers,
} from '../../core/index.ts';
import type { ClientCredential } from '../helpers/registry-fixtures.ts';

/**
 * classifyRenewalPeer (core/renewal-after-expiry.ts) on real TLS handshakes: a listener set up as the API's
 * (client certificate requested, not required, verified by OpenSSL against the roots), and client
 * certificates that are expired *and* something else. OpenSSL reports only its last error, which for an
 * expired leaf is the expiry: the table records what OpenSSL said next to what fleetgate decided, so the
 * cases where "expired" hides a worse problem are visible.
 */
const pem = (ca: CaCredential) => `${ca.certificate.toString('pem')}\n`;
const ago = (days: number) => new Date(Date.now() - days * dayMs);

let root: CaCredential;
let deviceCa: CaCredential;
let claimCa: CaCredential;
let manufacturerCa: CaCredential;
let foreignDeviceCa: CaCredential;
/** A second PKI whose device CA expired a year ago (root still valid). */
let oldRoot: CaCredential;
let oldDeviceCa: CaCredential;
let server: Server;
let issuers: TrustedIssuers;
let oldIssuers: TrustedIssuers;
const seen = new Map<string, { socket: TLSSocket }>();

/** A leaf with exactly these dates, names and purpose, signed by `signer` (what a CA we do not run might sign). */
function leaf(signer: CaCredential, options: { cn: string; uri: string; notBefore: Date; notAfter: Date; serverAuth?: boolean }): Promise<ClientCredential & { der: Uint8Array }> {
  const { cn, ...rest } = options;
  return forgedLeaf(signer, { ...rest, serial: '01' + Buffer.from(cn).toString('hex').slice(0, 30), commonName: cn, chain: pem(signer) });
}

/** The same certificate with one bit of its signature flipped. */
function tampered(credential: ClientCredential & { der: Uint8Array }, chain: string): ClientCredential {
  const der = Buffer.from(credential.der);
  der[der.length - 3] = (der[der.length - 3] ?? 0) ^ 0x01;
  return { key: credential.key, cert: new X509Certificate(der).toString() + chain };
}

/** Connects with `credential` and answers what the server's socket showed. */
async function handshake(name: string, credential: ClientCredential): Promise<TLSSocket> {
  const port = (server.address() as AddressInfo).port;
  const client = connect({ host: '127.0.0.1', port, servername: name, cert: credential.cert, key: credential.key, ca: pem(root), rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  });
  for (let attempt = 0; attempt < 100 && !seen.has(name); attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
  client.destroy();
  const entry = seen.get(name);
  if (entry === undefined) throw new Error(`server never saw ${name}`);
  return entry.socket;
}

beforeAll(async () => {
  root = await createRootCa({ commonName: 'fleetgate root CA', clock: systemClock });
  deviceCa = await createIssuingCa({ issuer: root, commonName: 'fleetgate device CA', clock: systemClock });
  claimCa = await createIssuingCa({ issuer: root, commonName: 'fleetgate claim CA', clock: systemClock });
  manufacturerCa = await createRootCa({ commonName: 'Acme Birth CA', clock: systemClock });
  const foreignRoot = await createRootCa({ commonName: 'fleetgate root CA', clock: systemClock });
  foreignDeviceCa = await createIssuingCa({ issuer: foreignRoot, commonName: 'fleetgate device CA', clock: systemClock });
  const elevenYearsAgo = fixedClock(ago(11 * 365));
  oldRoot = await createRootCa({ commonName: 'old fleetgate root CA', clock: elevenYearsAgo });
  oldDeviceCa = await createIssuingCa({ issuer: oldRoot, commonName: 'old fleetgate device CA', clock: elevenYearsAgo });

  const parse = (text: string) => new X509Certificate(text);
  issuers = trustedIssuers(parse, { device: [pem(deviceCa)], claim: [pem(claimCa)], manufacturer: [pem(manufacturerCa)] });
  oldIssuers = trustedIssuers(parse, { device: [pem(oldDeviceCa)], claim: [], manufacturer: [] });

  const keys = await generateKeyPair();
  const serverCertificate = await issueCertificate({ issuer: root, publicKey: keys.publicKey, profile: { kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }, clock: systemClock });
  server = createServer(
    {
      ...listenerSecureContext({ cert: serverCertificate.pem, key: await privateKeyToPem(keys.privateKey), ca: [pem(root), pem(manufacturerCa), pem(oldRoot)] }),
      requestCert: true,
      rejectUnauthorized: false,
    },
    (socket) => {
      seen.set(socket.servername || '', { socket });
      socket.on('error', () => undefined);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
});

const device = (id: string) => ({ cn: id, uri: deviceUri(id) });

describe('classifyRenewalPeer over real TLS', () => {
  it.each<[string, () => Promise<ClientCredential>, (() => TrustedIssuers) | undefined, { openssl: string | null; kind: string; code?: string; afterExpiry: boolean }]>([
    [
      'an expired device certificate from the device CA',
      () => leaf(deviceCa, { ...device('d1'), notBefore: ago(40), notAfter: ago(10) }),
      undefined,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'device', afterExpiry: true },
    ],
    [
      'the same names, expired, signed by a foreign CA of the same name (its chain sent along)',
      () => leaf(foreignDeviceCa, { ...device('d1'), notBefore: ago(40), notAfter: ago(10) }),
      undefined,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_UNTRUSTED', afterExpiry: false },
    ],
    [
      'an expired leaf copying a device, signed by a trusted manufacturer CA',
      () => leaf(manufacturerCa, { ...device('d1'), notBefore: ago(40), notAfter: ago(10) }),
      undefined,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_EXPIRED', afterExpiry: false },
    ],
    [
      'an expired device certificate whose signature is broken',
      async () => tampered(await leaf(deviceCa, { ...device('d2'), notBefore: ago(40), notAfter: ago(10) }), pem(deviceCa)),
      undefined,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_UNTRUSTED', afterExpiry: false },
    ],
    [
      'an expired device certificate for server authentication only',
      () => leaf(deviceCa, { ...device('d3'), notBefore: ago(40), notAfter: ago(10), serverAuth: true }),
      undefined,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_INVALID', afterExpiry: false },
    ],
    [
      'an expired device certificate whose device CA has expired too',
      () => leaf(oldDeviceCa, { ...device('d4'), notBefore: ago(10 * 365 + 40), notAfter: ago(10 * 365 + 10) }),
      () => oldIssuers,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_EXPIRED', afterExpiry: false },
    ],
    [
      'an unexpired device certificate under an expired device CA',
      () => leaf(oldDeviceCa, { ...device('d5'), notBefore: ago(10), notAfter: ago(-20) }),
      () => oldIssuers,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_EXPIRED', afterExpiry: false },
    ],
    [
      'an expired claim certificate',
      () => leaf(claimCa, { cn: 'claim-1', uri: 'urn:example:claim', notBefore: ago(40), notAfter: ago(10) }),
      undefined,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_EXPIRED', afterExpiry: false },
    ],
    [
      'an expired operator certificate',
      () => leaf(deviceCa, { cn: 'alice', uri: operatorUri('alice'), notBefore: ago(40), notAfter: ago(10) }),
      undefined,
      { openssl: 'CERT_HAS_EXPIRED', kind: 'refused', code: 'AUTH_CERT_EXPIRED', afterExpiry: false },
    ],
    [
      'a valid device certificate',
      () => leaf(deviceCa, { ...device('d6'), notBefore: ago(1), notAfter: ago(-30) }),
      undefined,
      { openssl: null, kind: 'device', afterExpiry: false },
    ],
    [
      'a device certificate not valid yet',
      () => leaf(deviceCa, { ...device('d7'), notBefore: ago(-1), notAfter: ago(-30) }),
      undefined,
      { openssl: 'CERT_NOT_YET_VALID', kind: 'refused', code: 'AUTH_CERT_NOT_YET_VALID', afterExpiry: false },
    ],
  ])('%s', async (name, make, trust, expected) => {
    const socket = await handshake(name.replace(/[^a-z0-9]+/g, '-').slice(0, 60), await make());
    expect(socket.authorized ? null : String(socket.authorizationError)).toBe(expected.openssl);
    const peer = classifyRenewalPeer(socket, trust?.() ?? issuers, new Date());
    expect({ kind: peer.credential.kind, code: peer.credential.kind === 'refused' ? peer.credential.code : undefined, afterExpiry: peer.afterExpiry }).toEqual({
      kind: expected.kind,
      code: expected.code,
      afterExpiry: expected.afterExpiry,
    });
  });
});
