import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CaRotation, CertificateAuthority, CertificateAuthorityList } from '../../contract/index.ts';
import { createCsr, createRootCa, generateKeyPair, privateKeyToPem, rootsToTrust, systemClock, x509 } from '../../core/index.ts';
import { type ClientCredential, connectClient, foreignDeviceCredential, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * CA rollover without downtime (README "Rotating certificates and CAs"): device, claim and root CAs rotate
 * in three stages while devices stay connected and keep reconnecting; retiring is refused while the old CA
 * still vouches for anything, and what it signed is refused once it is retired.
 */
let gw: TestGateway;
beforeEach(async () => {
  gw = await startTestGateway();
});
afterEach(async () => {
  await gw?.close();
});

async function cas(): Promise<CertificateAuthority[]> {
  const response = await gw.api<CertificateAuthorityList>('GET', '/v1/pki/cas', { token: true });
  expect(response.status).toBe(200);
  return [...response.body.items];
}

async function rotate(role: 'root' | 'device' | 'claim', stage: 'prepare' | 'activate' | 'retire') {
  return gw.api<CaRotation & { code?: string; message?: string }>('POST', '/v1/pki/cas/rotate', { token: true, body: { role, stage } });
}

async function rotateOk(role: 'root' | 'device' | 'claim', stage: 'prepare' | 'activate' | 'retire'): Promise<CaRotation> {
  const response = await rotate(role, stage);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body;
}

/** Retries until `attempt` resolves: listeners apply a new trust snapshot asynchronously after the API answered. */
async function eventually<T>(attempt: () => Promise<T>, tries = 50): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (error) {
      if (i >= tries) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function connectOk(id: string, credential: ClientCredential, ca = gw.ca) {
  const client = await connectClient(gw.mqttPort, ca, id, credential);
  return client;
}

/** Renews over POST /v1/renew with the current certificate as TLS client certificate: what a campaign makes a device do. */
async function renew(id: string, credential: ClientCredential): Promise<ClientCredential> {
  const keys = await generateKeyPair();
  const response = await gw.api<{ certificate: string; chain: string }>('POST', '/v1/renew', { credential, body: { csr: await createCsr(keys, id) } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return { key: await privateKeyToPem(keys.privateKey), cert: response.body.certificate + response.body.chain };
}

/** A public binary answer (CRL), verified with the trust bundle. */
function fetchDer(path: string): Promise<ArrayBuffer> {
  const ca = readFileSync(join(gw.dataDirPath, 'pki', 'trust-bundle.pem'), 'utf8');
  return new Promise((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port: gw.apiPort, path, ca, servername: 'localhost' }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => (response.statusCode === 200 ? resolve(new Uint8Array(Buffer.concat(chunks)).buffer) : reject(new Error(`${path}: HTTP ${response.statusCode}`))));
    }).on('error', reject);
  });
}

const issuerOf = (pem: string, candidates: readonly CertificateAuthority[]) => candidates.find((ca) => new X509Certificate(pem).checkIssued(new X509Certificate(ca.pem)))?.id;

/** The server certificate chain the MQTT listener presents. */
function serverChain(): Promise<X509Certificate[]> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.mqttPort, rejectUnauthorized: false }, () => {
      const chain: X509Certificate[] = [];
      // What the server sent after its leaf is in getPeerCertificate(true), linked by issuerCertificate.
      const detailed = socket.getPeerCertificate(true);
      const seen = new Set<string>();
      for (let entry = detailed; entry && !seen.has(entry.fingerprint256); entry = entry.issuerCertificate) {
        seen.add(entry.fingerprint256);
        chain.push(new X509Certificate(entry.raw));
      }
      socket.end();
      resolve(chain);
    });
    socket.on('error', reject);
  });
}

/** CA certificates after the leaf that are not self-signed: the cross-certificates, as "subject <- issuer" (Node may add the self-signed root it found). */
const crossCertificatesIn = (chain: readonly X509Certificate[]) => chain.slice(1).filter((c) => c.subject !== c.issuer).map((c) => `${c.subject} <- ${c.issuer}`);

describe('device CA rotation', () => {
  it('keeps devices admitted through prepare and activate, refuses retire until they moved, then refuses the old certificates', async () => {
    const before = await cas();
    const oldDeviceCa = before.find((ca) => ca.role === 'device' && ca.state === 'active')!;
    expect(before.map((ca) => `${ca.role} ${ca.state}`).sort()).toEqual(['claim active', 'device active', 'root active']);
    const alpha = await gw.createDevice('rot-alpha');
    const beta = await gw.createDevice('rot-beta');
    const alphaLive = await connectOk('rot-alpha', alpha);

    const prepared = await rotateOk('device', 'prepare');
    expect(prepared.ca).toMatchObject({ role: 'device', state: 'next', issuerId: before.find((ca) => ca.role === 'root')!.id });
    // Trusted at once, beside the active CA: in the trust bundle, and every device still connects.
    const bundle = (await gw.api<string>('GET', '/v1/pki/trust-bundle')).body;
    expect(bundle).toContain(prepared.ca.pem.trim());
    expect(bundle).toContain(oldDeviceCa.pem.trim());
    expect(alphaLive.connected).toBe(true);
    await (await connectOk('rot-beta', beta)).endAsync();

    const activated = await rotateOk('device', 'activate');
    expect(activated.items.find((ca) => ca.id === oldDeviceCa.id)?.state).toBe('retiring');
    expect(activated.ca.state).toBe('active');
    // New certificates come from the new CA; the old ones still connect.
    const gamma = await gw.createDevice('rot-gamma');
    expect(issuerOf(gamma.cert, await cas())).toBe(activated.ca.id);
    await eventually(async () => (await connectOk('rot-gamma', gamma)).endAsync());
    await (await connectOk('rot-beta', beta)).endAsync();
    expect(alphaLive.connected).toBe(true);

    // Refused while the old CA still vouches for the two devices: the answer names them and the campaign to run.
    const early = await rotate('device', 'retire');
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('PKI_CA_IN_USE');
    expect(early.body.message).toContain('2 unexpired device or service certificate(s)');
    expect(early.body.message).toContain(`--select ca=${oldDeviceCa.id}`);
    await gw.waitForAudit({ action: 'ca.retire', result: 'refused' }, (entry) => entry.code === 'PKI_CA_IN_USE');
    expect((await cas()).find((ca) => ca.id === oldDeviceCa.id)?.usage.certificates).toBe(2);

    // Each device renews (as a rotation campaign makes it) and reconnects with the new certificate.
    const alphaNew = await renew('rot-alpha', alpha);
    const betaNew = await renew('rot-beta', beta);
    expect(issuerOf(alphaNew.cert, await cas())).toBe(activated.ca.id);
    // A renewed certificate's CRL distribution point names its CA, whose CRL is signed by that CA.
    const [crlUrl] = new x509.X509Certificate(alphaNew.cert).getExtension(x509.CRLDistributionPointsExtension)?.distributionPoints[0]?.distributionPoint?.fullName?.map((name) => name.uniformResourceIdentifier) ?? [];
    expect(crlUrl).toMatch(new RegExp(`/v1/pki/crl\\?ca=${activated.ca.id}$`));
    expect(new x509.X509Crl(await fetchDer(`/v1/pki/crl?ca=${activated.ca.id}`)).issuer).toBe(activated.ca.subject);
    expect(new x509.X509Crl(await fetchDer(`/v1/pki/crl?ca=${oldDeviceCa.id}`)).issuer).toBe(oldDeviceCa.subject);
    await alphaLive.endAsync();
    await (await connectOk('rot-alpha', alphaNew)).endAsync();
    await (await connectOk('rot-beta', betaNew)).endAsync();

    const retired = await rotateOk('device', 'retire');
    expect(retired.ca).toMatchObject({ id: oldDeviceCa.id, state: 'retired' });
    await gw.waitForAudit({ action: 'ca.retire', result: 'ok' });
    // No longer in the bundle; its certificates are refused, even sent with the old CA as their chain.
    expect((await gw.api<string>('GET', '/v1/pki/trust-bundle')).body).not.toContain(oldDeviceCa.pem.trim());
    await eventually(async () => {
      await expect(connectOk('rot-alpha', { key: alpha.key, cert: alpha.cert + oldDeviceCa.pem })).rejects.toMatchObject({ code: 5 });
    });
    const alphaSerial = new X509Certificate(alpha.cert).serialNumber.toLowerCase();
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused' }, (entry) => entry.code === 'AUTH_CERT_UNTRUSTED' && entry.detail?.serial === alphaSerial);
    // The moved devices connect; the retired CA's CRL keeps answering until its last certificate expires.
    await (await connectOk('rot-alpha', alphaNew)).endAsync();
    const crl = await gw.api<unknown>('GET', `/v1/pki/crl?ca=${oldDeviceCa.id}`);
    expect(crl.status).toBe(200);
    // A CA nobody made: a coded refusal, audited at the edge.
    const unknown = await gw.api<{ code: string }>('GET', '/v1/pki/crl?ca=0000000000000000');
    expect([unknown.status, unknown.body.code]).toEqual([404, 'PKI_CA_NOT_FOUND']);
    await gw.waitForAudit({ result: 'refused' }, (entry) => entry.code === 'PKI_CA_NOT_FOUND');
  });

  it('lists registered manufacturer CAs with their role', async () => {
    const maker = await createRootCa({ commonName: 'Acme birth CA', clock: systemClock });
    const registered = await gw.api('POST', '/v1/claim-issuers', { token: true, body: { name: 'acme', template: 'default', certificate: maker.certificate.toString('pem') } });
    expect(registered.status).toBe(201);
    const listed = (await cas()).find((ca) => ca.role === 'manufacturer');
    expect(listed).toMatchObject({ state: 'active', subject: 'CN=Acme birth CA', usage: { certificates: 0, claims: 1, authorities: 0 } });
  });

  it('refuses stages out of order, and rotation by anyone but an admin', async () => {
    expect((await rotate('device', 'activate')).body.code).toBe('PKI_CA_ROTATION_STAGE');
    expect((await rotate('device', 'retire')).body.code).toBe('PKI_CA_ROTATION_STAGE');
    // Two admins preparing at once: one CA is made, the other gets a coded refusal (never a 500).
    const racing = await Promise.all([rotate('device', 'prepare'), rotate('device', 'prepare')]);
    expect(racing.map((response) => response.status).sort()).toEqual([200, 409]);
    expect(['PKI_CA_ROTATION_STAGE', 'PKI_CA_ROTATION_CONFLICT']).toContain(racing.find((response) => response.status === 409)?.body.code);
    expect((await rotate('device', 'prepare')).body.code).toBe('PKI_CA_ROTATION_STAGE');
    const anonymous = await gw.api<{ code: string }>('POST', '/v1/pki/cas/rotate', { body: { role: 'device', stage: 'activate' } });
    expect(anonymous.status).toBe(401);
    const device = await gw.createDevice('rot-intruder');
    const withDeviceCertificate = await gw.api<{ code: string }>('POST', '/v1/pki/cas/rotate', { credential: device, body: { role: 'device', stage: 'activate' } });
    expect(withDeviceCertificate.status).toBe(401);
    expect((await cas()).filter((ca) => ca.role === 'device').map((ca) => ca.state)).toEqual(['active', 'next']);
  });
});

describe('a process that missed the retirement', () => {
  it('still refuses what a retired CA signed: admission reads the CA state with the certificate row', async () => {
    const device = await gw.createDevice('missed-1');
    const old = (await cas()).find((ca) => ca.role === 'device' && ca.state === 'active')!;
    await rotateOk('device', 'prepare');
    await rotateOk('device', 'activate');
    // Retired behind every process's back: no trust.changed, so the listeners still trust the old CA.
    await gw.gateway.dataDir.registry.changeCertificateAuthorities({ transitions: [{ id: old.id, from: 'retiring', to: 'retired' }], audit: { actor: 'test', action: 'ca.retire', result: 'ok' } });
    await expect(connectOk('missed-1', device)).rejects.toMatchObject({ code: 5 });
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'refused', deviceId: 'missed-1' }, (entry) => entry.code === 'AUTH_CERT_UNTRUSTED');
    const keys = await generateKeyPair();
    const renewal = await gw.api<{ code: string }>('POST', '/v1/renew', { credential: device, body: { csr: await createCsr(keys, 'missed-1') } });
    expect(renewal.body.code).toBe('AUTH_CERT_UNTRUSTED');
  });
});

describe('the trust bundle on MQTT', () => {
  it('is retained for every device session to read, follows a rotation, and nobody may publish it', async () => {
    const device = await gw.createDevice('bundle-reader');
    const client = await connectOk('bundle-reader', device);
    const first = new Promise<string>((resolve) => client.once('message', (_topic, payload: Buffer) => resolve(payload.toString())));
    await client.subscribeAsync('$fleetgate/trust/bundle', { qos: 1 });
    expect(await first).toBe((await gw.api<string>('GET', '/v1/pki/trust-bundle')).body);

    const next = new Promise<string>((resolve) => client.once('message', (_topic, payload: Buffer) => resolve(payload.toString())));
    const prepared = await rotateOk('root', 'prepare');
    const updated = await next;
    expect(updated).toContain(prepared.ca.pem.trim());
    // What a device keeps: the new root, because the bundle carries it signed by the root the device trusts.
    expect((await rootsToTrust([gw.ca], updated, new Date())).map((pem) => pem.trim()).sort()).toEqual([gw.ca.trim(), prepared.ca.pem.trim()].sort());

    // A device cannot plant a bundle: the PUBLISH closes its connection and the retained bundle is unchanged.
    const attacker = await connectOk('bundle-reader', device);
    const closed = new Promise<void>((resolve) => attacker.once('close', () => resolve()));
    attacker.publish('$fleetgate/trust/bundle', 'forged', { qos: 1, retain: true });
    await closed;
    await gw.waitForAudit({ action: 'mqtt.publish', result: 'refused' }, (entry) => entry.code === 'ACL_RESERVED_TOPIC');
    const reader = await connectOk('bundle-reader', device);
    const retained = new Promise<string>((resolve) => reader.once('message', (_topic, payload: Buffer) => resolve(payload.toString())));
    await reader.subscribeAsync('$fleetgate/trust/bundle', { qos: 1 });
    expect(await retained).toBe(updated);
    await reader.endAsync();
    await client.endAsync(true);
  });

  it('adds no root a forged bundle vouches for itself', async () => {
    const forged = (await foreignDeviceCredential('x')).cert;
    const rogue = await createRootCa({ commonName: 'rogue root', clock: systemClock });
    const rogueBundle = rogue.certificate.toString('pem') + '\n' + forged;
    expect(await rootsToTrust([gw.ca], rogueBundle, new Date())).toEqual([gw.ca.trim() + '\n']);
  });
});

describe('claim CA rotation', () => {
  it('keeps claim sessions admitted, refuses retire while claims are usable, then refuses the old claim certificates', async () => {
    const oldClaimCa = (await cas()).find((ca) => ca.role === 'claim')!;
    const oldClaim = await gw.issueClaim({});
    const live = await connectOk('serial-rot-1', oldClaim);
    await rotateOk('claim', 'prepare');
    const activated = await rotateOk('claim', 'activate');
    // A factory gets claims from the new CA; the old claim still connects.
    const newClaim = await gw.issueClaim({});
    expect(issuerOf(newClaim.cert, await cas())).toBe(activated.ca.id);
    await eventually(async () => (await connectOk('serial-rot-2', newClaim)).endAsync());
    await (await connectOk('serial-rot-3', oldClaim)).endAsync();
    expect(live.connected).toBe(true);

    const early = await rotate('claim', 'retire');
    expect(early.body.code).toBe('PKI_CA_IN_USE');
    expect(early.body.message).toContain('1 usable claim(s)');
    await live.endAsync();
    expect((await gw.api('POST', `/v1/claims/${oldClaim.claimId}/revoke`, { token: true })).status).toBe(200);

    await rotateOk('claim', 'retire');
    expect((await cas()).find((ca) => ca.id === oldClaimCa.id)?.state).toBe('retired');
    await eventually(async () => {
      await expect(connectOk('serial-rot-4', oldClaim)).rejects.toMatchObject({ code: 5 });
    });
    await (await connectOk('serial-rot-5', newClaim)).endAsync();
  });
});

describe('root rotation', () => {
  it('lets devices that hold only the old root and devices that hold only the new root connect throughout', async () => {
    const oldRoot = (await cas()).find((ca) => ca.role === 'root')!;
    const device = await gw.createDevice('root-rot-1');
    const connectsWith = async (rootPem: string) => (await connectOk('root-rot-1', device, rootPem)).endAsync();

    const prepared = await rotateOk('root', 'prepare');
    const newRoot = prepared.ca;
    expect(newRoot).toMatchObject({ role: 'root', state: 'next', issuerId: null });
    // One cross-certificate each way.
    const crosses = prepared.items.filter((ca) => ca.role === 'cross');
    expect(crosses.map((ca) => [ca.crossOf, ca.issuerId]).sort()).toEqual([[newRoot.id, oldRoot.id], [oldRoot.id, newRoot.id]].sort());
    // The server still has its certificate from the old root, and now sends the old root signed by the new one.
    await eventually(async () => expect(crossCertificatesIn(await serverChain())).toEqual([`${oldRoot.subject} <- ${newRoot.subject}`]));
    await connectsWith(oldRoot.pem);
    await connectsWith(newRoot.pem);

    await rotateOk('root', 'activate');
    // The server certificate moves to the new root; it sends the new root signed by the old one.
    await eventually(async () => {
      const chain = await serverChain();
      expect(chain[0]!.checkIssued(new X509Certificate(newRoot.pem))).toBe(true);
      expect(crossCertificatesIn(chain)).toEqual([`${newRoot.subject} <- ${oldRoot.subject}`]);
    });
    await connectsWith(oldRoot.pem);
    await connectsWith(newRoot.pem);

    // The old root is retired only once no CA it signed is still in service.
    const early = await rotate('root', 'retire');
    expect(early.body.code).toBe('PKI_CA_IN_USE');
    expect(early.body.message).toContain('2 CA(s) it signed');
    for (const role of ['device', 'claim'] as const) {
      const prepared = await rotateOk(role, 'prepare');
      expect(prepared.ca.issuerId).toBe(newRoot.id);
      await rotateOk(role, 'activate');
    }
    const moved = await renew('root-rot-1', device);
    await connectsWith(oldRoot.pem); // the old device certificate works until the device first uses the new one
    await eventually(async () => (await connectOk('root-rot-1', moved, newRoot.pem)).endAsync());
    await (await connectOk('root-rot-1', moved, oldRoot.pem)).endAsync();
    await rotateOk('device', 'retire');
    await rotateOk('claim', 'retire');
    await rotateOk('root', 'retire');

    // Only the new root is left: no cross-certificate is sent, and a device holding only the new root connects.
    await eventually(async () => expect(crossCertificatesIn(await serverChain())).toEqual([]));
    await (await connectOk('root-rot-1', moved, newRoot.pem)).endAsync();
    await expect(connectOk('root-rot-1', moved, oldRoot.pem)).rejects.toThrow();
    expect((await cas()).filter((ca) => ca.state !== 'retired').map((ca) => ca.role).sort()).toEqual(['claim', 'device', 'root']);
    expect((await gw.api<string>('GET', '/v1/pki/ca')).body.trim()).toBe(newRoot.pem.trim());
  });
});
