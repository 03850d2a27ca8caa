import * as fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCsr, enrollTopics, isFleetgateError, pemBlocks, toBase64 } from '../../core/index.ts';
import type { Registry } from '../../registry/index.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ClientCredential, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { connectPacket, openRaw, pingreqPacket, publishPacket, subscribePacket } from './raw-mqtt.ts';

/**
 * Bounded fuzzing of what an attacker controls byte by byte: CSRs (into the CSR checks and POST /v1/enroll)
 * and MQTT input (random and mutated packets on a TLS socket of a real gateway, and enrollment payloads of a
 * claim session). After every run: no crash, no unhandled rejection, the gateway still serves a legitimate
 * device, and the registry holds no partial state. FUZZ_SEED replays a failing run (fast-check prints it);
 * FUZZ_RUNS scales the runs.
 */
const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const scale = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number) => ({ numRuns: Math.max(1, Math.round(n * scale)), ...(seed === undefined ? {} : { seed }) });

let gw: TestGateway;
let claim: ClientCredential & { claimId: string };
let device: ClientCredential;
let validCsr: string;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  gw = await startTestGateway({ FLEETGATE_API_RATE_LIMIT_PER_MINUTE: '1000000', FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000', FLEETGATE_CONNECT_TIMEOUT_MS: '1000' });
  claim = await gw.issueClaim({});
  device = await gw.createDevice('fuzz-dev');
  validCsr = (await deviceKeyAndCsr('SN-fuzz-valid')).csr;
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await gw?.close();
});

/** Every device has a certificate (enrollment writes both or neither), and the claim's uses match its devices. */
async function assertNoPartialState(registry: Registry): Promise<void> {
  for (const row of await registry.listDevices({ limit: 1000 })) expect((await registry.listCertificates(row.id)).length, `device ${row.id} without certificate`).toBeGreaterThan(0);
  const enrolled = (await registry.queryAudit({ action: 'device.enroll', result: 'ok', limit: 1000 })).filter((e) => e.detail?.claimId === claim.claimId && e.detail?.repeated !== true);
  expect((await registry.getClaim(claim.claimId))?.uses).toBe(enrolled.length);
}

async function legitimateRoundTrip(): Promise<void> {
  const client = await gw.connect('fuzz-dev', device);
  await client.subscribeAsync('devices/fuzz-dev/ping');
  const received = nextMessage(client, 'devices/fuzz-dev/ping');
  await client.publishAsync('devices/fuzz-dev/ping', 'pong');
  expect(await received).toBe('pong');
  await client.endAsync();
}

/** A byte-level mutation of `bytes`: flip, cut, insert or overwrite a run. */
const mutation = fc.record({
  kind: fc.constantFrom('flip', 'truncate', 'insert', 'overwrite'),
  at: fc.nat(),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
});
function mutate(bytes: Uint8Array, m: { kind: string; at: number; bytes: Uint8Array }): Uint8Array {
  const at = bytes.length === 0 ? 0 : m.at % bytes.length;
  const out = Uint8Array.from(bytes);
  switch (m.kind) {
    case 'flip':
      out[at] = (out[at] ?? 0) ^ (m.bytes[0] ?? 1 | 1);
      return out;
    case 'truncate':
      return out.subarray(0, at);
    case 'insert':
      return Uint8Array.from([...out.subarray(0, at), ...m.bytes, ...out.subarray(at)]);
    default:
      out.set(m.bytes.subarray(0, out.length - at), at);
      return out;
  }
}

const pem = (der: Uint8Array) => `-----BEGIN CERTIFICATE REQUEST-----\n${toBase64(der).replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;

describe('CSR input', () => {
  it('the CSR checks refuse anything but a valid request with a coded error, never another exception', async () => {
    const der = pemBlocks(validCsr, ['CERTIFICATE REQUEST'])[0] as Uint8Array;
    const input = fc.oneof(
      fc.string({ maxLength: 400 }),
      fc.uint8Array({ maxLength: 600 }).map((bytes) => toBase64(bytes)),
      fc.uint8Array({ maxLength: 600 }).map(pem),
      fc.array(mutation, { minLength: 1, maxLength: 4 }).map((ms) => pem(ms.reduce<Uint8Array>((bytes, m) => mutate(bytes, m), der))),
    );
    await fc.assert(
      fc.asyncProperty(input, async (csr) => {
        try {
          await checkCsr(csr);
        } catch (error) {
          expect(isFleetgateError(error), String(error)).toBe(true);
        }
      }),
      runs(300),
    );
  });

  it('POST /v1/enroll answers 201 or a coded 4xx, and a refusal leaves neither a device nor a claim use behind', async () => {
    const der = pemBlocks(validCsr, ['CERTIFICATE REQUEST'])[0] as Uint8Array;
    let n = 0;
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 400 }).map(pem),
      fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => pem(ms.reduce<Uint8Array>((bytes, m) => mutate(bytes, m), der))),
      fc.string({ maxLength: 200 }),
    );
    await fc.assert(
      fc.asyncProperty(body, async (csr) => {
        const serial = `SN-fuzz-${(n += 1)}`;
        const response = await gw.api<{ code?: string }>('POST', '/v1/enroll', { body: { csr, serial }, credential: claim });
        expect(response.status, JSON.stringify(response.body)).toBeLessThan(500);
        if (response.status !== 201) {
          expect(response.body.code).toEqual(expect.any(String));
          expect(await gw.gateway.dataDir.registry.getDevice(serial)).toBeUndefined();
        }
      }),
      runs(30),
    );
    await assertNoPartialState(gw.gateway.dataDir.registry);
  });
});

describe('MQTT input', () => {
  it('random and mutated packets on a TLS socket close that socket at worst, never the gateway', async () => {
    const valid = Buffer.concat([
      connectPacket({ clientId: 'fuzz-dev', will: { topic: 'devices/fuzz-dev/status', payload: 'gone' } }),
      subscribePacket(1, ['devices/fuzz-dev/#', '#']),
      publishPacket('devices/fuzz-dev/t', 'x', { qos: 1, packetId: 2 }),
      publishPacket('$fleetgate/certs/fuzz-dev/renew/request', '{"csr":"x"}', { qos: 1, packetId: 3 }),
      pingreqPacket,
    ]);
    const bytes = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 300 }),
      fc.array(mutation, { minLength: 1, maxLength: 6 }).map((ms) => ms.reduce<Uint8Array>((b, m) => mutate(b, m), valid)),
      // A valid CONNECT, then garbage: exercises the packet parser of an admitted session.
      fc.uint8Array({ minLength: 1, maxLength: 200 }).map((tail) => Uint8Array.from([...connectPacket({ clientId: 'fuzz-dev' }), ...tail])),
    );
    await fc.assert(
      fc.asyncProperty(bytes, fc.boolean(), async (payload, withCertificate) => {
        const connection = await openRaw({ port: gw.mqttPort, ca: gw.ca }, withCertificate ? device : undefined);
        connection.write(Buffer.from(payload));
        await Promise.race([connection.closed, new Promise((resolve) => setTimeout(resolve, 100))]);
        connection.destroy();
      }),
      runs(40),
    );
    await legitimateRoundTrip();
    await assertNoPartialState(gw.gateway.dataDir.registry);
    expect(unhandled).toEqual([]);
  });

  it('enrollment payloads of a claim session get an answer, and a refusal consumes no claim use', async () => {
    const serial = 'SN-fuzz-mqtt';
    const session = await gw.connect(serial, claim);
    const topics = enrollTopics(serial);
    await session.subscribeAsync([topics.accepted, topics.rejected]);
    const replies: { topic: string; body: string }[] = [];
    session.on('message', (topic, payload) => replies.push({ topic, body: payload.toString() }));
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.json().map((json) => Buffer.from(json)),
      fc.record({ csr: fc.string({ maxLength: 100 }), attributes: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }) }, { requiredKeys: [] }).map((o) => Buffer.from(JSON.stringify(o))),
      fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => Buffer.from(JSON.stringify({ csr: pem(ms.reduce<Uint8Array>((b, m) => mutate(b, m), pemBlocks(validCsr, ['CERTIFICATE REQUEST'])[0] as Uint8Array)) }))),
    );
    try {
      await fc.assert(
        fc.asyncProperty(payload, async (body) => {
          const before = replies.length;
          const uses = (await gw.gateway.dataDir.registry.getClaim(claim.claimId))?.uses;
          await session.publishAsync(topics.request, body, { qos: 1 });
          for (let i = 0; i < 200 && replies.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 10));
          const reply = replies[before];
          expect(reply, 'the gateway answers every request').toBeDefined();
          if (reply?.topic === topics.rejected) {
            expect(JSON.parse(reply.body)).toEqual({ code: expect.any(String), message: expect.any(String) });
            expect((await gw.gateway.dataDir.registry.getClaim(claim.claimId))?.uses).toBe(uses);
          }
        }),
        runs(25),
      );
    } finally {
      session.end(true);
    }
    await legitimateRoundTrip();
    await assertNoPartialState(gw.gateway.dataDir.registry);
    expect(unhandled).toEqual([]);
  });
});
