import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootCa, generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../../core/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * What the real OpenSSL client can negotiate with both listeners: over TLS 1.2 only ECDHE key exchange with
 * an AEAD cipher (GCM, ChaCha20-Poly1305); no CBC suites with SHA-1 or SHA-2 MACs, no CCM or CCM-8, no
 * static RSA key exchange. TLS 1.3 keeps OpenSSL's default suites.
 */
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

/** `openssl s_client` with stdin closed: it completes the handshake (or not), prints the session and exits. */
function sClient(port: number, args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

const refusedTls12 = [
  'ECDHE-ECDSA-AES128-SHA', // CBC, SHA-1 MAC
  'ECDHE-ECDSA-AES256-SHA',
  'ECDHE-ECDSA-AES128-SHA256', // CBC, SHA-256 MAC
  'ECDHE-ECDSA-AES256-SHA384',
  'ECDHE-ECDSA-AES128-CCM8', // 64-bit tag
  'ECDHE-ECDSA-AES128-CCM',
  'AES128-GCM-SHA256', // static RSA key exchange: no forward secrecy
  'DHE-RSA-AES128-GCM-SHA256',
];
const acceptedTls12 = ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'];

describe.each([
  ['MQTT', () => gw.mqttPort],
  ['API', () => gw.apiPort],
])('TLS suites on the %s listener', (_name, port) => {
  it.each(refusedTls12)('refuses TLS 1.2 with %s', async (cipher) => {
    const result = await sClient(port(), ['-tls1_2', '-cipher', cipher]);
    expect(result.code, result.output).not.toBe(0);
    expect(result.output).not.toMatch(/Cipher is (?!\(NONE\))/);
  });

  it.each(acceptedTls12)('negotiates TLS 1.2 with %s', async (cipher) => {
    const result = await sClient(port(), ['-tls1_2', '-cipher', cipher]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain(`Cipher is ${cipher}`);
  });

  it('keeps the TLS 1.3 default suites and refuses TLS_AES_128_CCM_8_SHA256', async () => {
    const tls13 = await sClient(port(), ['-tls1_3']);
    expect(tls13.code, tls13.output).toBe(0);
    expect(tls13.output).toMatch(/TLSv1\.3, Cipher is TLS_AES_256_GCM_SHA384/);
    const ccm8 = await sClient(port(), ['-tls1_3', '-ciphersuites', 'TLS_AES_128_CCM_8_SHA256']);
    expect(ccm8.code, ccm8.output).not.toBe(0);
  });

  it('refuses TLS 1.1', async () => {
    const result = await sClient(port(), ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0']);
    expect(result.code, result.output).not.toBe(0);
  });
});

describe('after the trust store is reloaded (a manufacturer CA registered while running)', () => {
  it('both listeners still refuse CBC suites', async () => {
    const manufacturer = await createRootCa({ commonName: 'Acme Devices Birth CA', clock: systemClock });
    const keys = await generateKeyPair();
    const issued = await issueCertificate({ issuer: manufacturer, publicKey: keys.publicKey, profile: { kind: 'device', deviceId: 'ACME-TLS-1', validityDays: 30 }, clock: systemClock });
    const birth = { key: await privateKeyToPem(keys.privateKey), cert: issued.pem };
    const registered = await gw.api('POST', '/v1/claim-issuers', { body: { name: 'acme-tls', template: 'default', certificate: manufacturer.certificate.toString('pem') }, token: true });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);

    // Both listeners have called setSecureContext once the birth certificate is accepted by each.
    const { csr } = await deviceKeyAndCsr('ACME-TLS-1');
    await until(async () => (await gw.api('POST', '/v1/enroll', { body: { csr }, credential: birth })).status === 201, 'the API to trust the manufacturer CA');
    await until(
      () =>
        gw.connect('ACME-TLS-1', birth).then(
          async (client) => (await client.endAsync(), true),
          () => false,
        ),
      'the broker to trust the manufacturer CA',
    );

    for (const port of [gw.mqttPort, gw.apiPort]) {
      const cbc = await sClient(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA']);
      expect(cbc.code, cbc.output).not.toBe(0);
      const gcm = await sClient(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
      expect(gcm.code, gcm.output).toBe(0);
    }
  });
});
