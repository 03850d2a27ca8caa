import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { type CaCredential, createIssuingCa, createRootCa, generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../../core/index.ts';

const pem = (credential: CaCredential) => credential.certificate.toString('pem') + '\n';

/** Serves a server certificate signed by `issuer` (chain sent) and says how a device trusting only `root` judges it. */
async function verdict(root: CaCredential, issuer: CaCredential, chain: string): Promise<string> {
  const keys = await generateKeyPair();
  const server = await issueCertificate({ issuer, publicKey: keys.publicKey, profile: { kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }, clock: systemClock });
  const listener = createServer({ cert: server.pem + chain, key: await privateKeyToPem(keys.privateKey) }, (socket) => socket.end());
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  try {
    return await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: (listener.address() as AddressInfo).port, ca: pem(root), servername: 'localhost' }, () => {
        socket.destroy();
        resolve('trusted');
      });
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(String(error.code)));
    });
  } finally {
    listener.close();
  }
}

describe('issuing CAs vouch for clients only', () => {
  it('a device CA key cannot make a server certificate a device accepts, while the root can', async () => {
    const root = await createRootCa({ commonName: 'purpose root', clock: systemClock });
    const deviceCa = await createIssuingCa({ issuer: root, commonName: 'purpose device CA', clock: systemClock });
    expect(await verdict(root, root, '')).toBe('trusted');
    // What a thief of the device CA key would present to devices: refused by OpenSSL's purpose check.
    expect(await verdict(root, deviceCa, pem(deviceCa))).toBe('INVALID_PURPOSE');
  });
});
