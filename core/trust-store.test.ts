import { describe, expect, it } from 'vitest';
import type { CertificateView } from './peer-identity.ts';
import { openTrustStore, type TrustSnapshot } from './trust-store.ts';

/** A certificate parser that only names what it parsed (the store never looks inside). */
const parse = (pem: string): CertificateView => ({
  serialNumber: pem,
  subject: `CN=${pem}`,
  subjectAltName: undefined,
  validFrom: '',
  validTo: '',
  fingerprint256: `AA:${pem.length.toString(16).padStart(2, '0')}`,
  raw: new Uint8Array(),
  publicKey: undefined,
  checkIssued: () => false,
  verify: () => false,
} as unknown as CertificateView);

const server = { cert: 'server-cert', key: 'server-key' };

async function store(initial: string[]) {
  let manufacturers = initial;
  const trust = await openTrustStore({ parse, load: async () => ({ anchors: { roots: ['root-ca'], device: ['device-ca'], claim: ['claim-ca'], manufacturer: manufacturers, cross: [] }, server }) });
  return { trust, set: (pems: string[]) => void (manufacturers = pems) };
}

describe('the trust store', () => {
  it('starts at version 1 with the gateway CAs and the manufacturer CAs as loaded', async () => {
    const { trust } = await store(['maker-a']);
    const snapshot = trust.current();
    expect(snapshot.version).toBe(1);
    expect(snapshot.anchors).toEqual({ roots: ['root-ca'], device: ['device-ca'], claim: ['claim-ca'], manufacturer: ['maker-a'], cross: [] });
    expect(snapshot.issuers.manufacturer.map((ca) => ca.certificate.serialNumber)).toEqual(['maker-a']);
  });

  it('tells every subscriber once per change, with the new snapshot, and nobody after unsubscribing', async () => {
    const { trust, set } = await store([]);
    const first: TrustSnapshot[] = [];
    const second: TrustSnapshot[] = [];
    trust.subscribe((snapshot) => first.push(snapshot));
    const stop = trust.subscribe((snapshot) => second.push(snapshot));
    set(['maker-a']);
    await trust.reload();
    stop();
    set(['maker-a', 'maker-b']);
    await trust.reload();
    expect(first.map((snapshot) => [snapshot.version, snapshot.anchors.manufacturer])).toEqual([
      [2, ['maker-a']],
      [3, ['maker-a', 'maker-b']],
    ]);
    expect(second.map((snapshot) => snapshot.version)).toEqual([2]);
    expect(trust.current().version).toBe(3);
  });

  it('keeps its version when a reload finds the same CAs', async () => {
    const { trust } = await store(['maker-a']);
    const seen: number[] = [];
    trust.subscribe((snapshot) => seen.push(snapshot.version));
    expect((await trust.reload()).version).toBe(1);
    expect(seen).toEqual([]);
  });

  it('runs concurrent reloads one after the other, so the last one read wins', async () => {
    const { trust, set } = await store([]);
    set(['maker-a']);
    const a = trust.reload();
    set(['maker-b']);
    const b = trust.reload();
    await Promise.all([a, b]);
    expect(trust.current().anchors.manufacturer).toEqual(['maker-b']);
  });

  it('tells the other listeners when one throws, and calls the failed one again at the next reload, even with nothing new', async () => {
    const { trust, set } = await store([]);
    let failing = true;
    const flaky: number[] = [];
    const steady: number[] = [];
    trust.subscribe((snapshot) => {
      if (failing) throw new Error('setSecureContext failed');
      flaky.push(snapshot.version);
    });
    trust.subscribe((snapshot) => steady.push(snapshot.version));
    set(['maker-a']);
    await expect(trust.reload()).rejects.toThrow(/could not apply trust version 2/);
    expect(steady).toEqual([2]);
    failing = false;
    await trust.reload(); // the same CAs: only the listener that failed is called
    expect(flaky).toEqual([2]);
    expect(steady).toEqual([2]);
  });

  it('calls a listener at once when the store moved on since the snapshot it was built from', async () => {
    const { trust, set } = await store([]);
    const builtFrom = trust.current();
    set(['maker-a']);
    await trust.reload(); // finishes while the subscriber is still starting
    const seen: string[][] = [];
    trust.subscribe((snapshot) => seen.push([...snapshot.anchors.manufacturer]), builtFrom);
    expect(seen).toEqual([['maker-a']]);
    trust.subscribe(() => seen.push(['unexpected'])); // built from the current snapshot: nothing to apply
    expect(seen).toEqual([['maker-a']]);
  });
});
