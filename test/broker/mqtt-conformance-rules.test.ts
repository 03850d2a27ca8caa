import { Aedes } from 'aedes';
import { duplexPair } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodedStringViolation, mayBreakStringRules, parserErrorViolation, topicFilterViolation, topicNameViolation, type ConformanceViolation } from '../../broker/mqtt-conformance.ts';
import { ConformanceError, createConformanceGuard } from '../../broker/mqtt-conformance-guard.ts';
import { accepted, connect, exchange, publish, refused } from '../helpers/mqtt-conformance-cases.ts';

/**
 * The conformance guard (broker/mqtt-conformance-guard.ts) on a bare aedes broker, through an in-memory
 * stream pair: every row of the byte-level table is refused for its own statement, and for nothing else.
 * (The gateway test, test/broker/mqtt-conformance.test.ts, runs the same rows over mTLS, where sampling
 * keeps most refusals out of the audit trail.)
 */
let broker: Aedes;
const guard = createConformanceGuard();
/** What aedes reported closing connections for: the errors the guard handed it. */
const seen: ConformanceError[] = [];
const record = (_client: unknown, error: Error) => error instanceof ConformanceError && seen.push(error);

beforeAll(async () => {
  broker = await Aedes.createBroker();
  broker.on('clientError', record);
  broker.on('connectionError', record);
});
afterAll(async () => {
  await new Promise<void>((resolve) => broker.close(() => resolve()));
});

let clients = 0;
async function run(packet: (id: string) => Buffer, options: { first?: boolean; awaited?: string[] } = {}) {
  seen.length = 0;
  const id = `rules-${++clients}`;
  const [server, peer] = duplexPair();
  server.once('close', () => peer.destroy()); // node:stream's pair does not carry a close across (Node 20)
  guard.attach(broker.handle(server));
  const outcome = await exchange(peer, id, packet(id), options);
  return { ...outcome, refusals: seen.map((error) => error.statement) };
}

describe('each rule, on its own', () => {
  it.each(refused.filter((row) => !row.byAdmission).map((row) => [`[${row.statement}] ${row.what}`, row] as const))('refuses %s for that statement', async (_name, row) => {
    expect(await run(row.packet, { first: row.first ?? false })).toEqual({ frames: row.before ?? [], closed: true, refusals: [row.statement] });
  });

  it.each(accepted.map((row) => [row.what, row] as const))('lets a valid %s through', async (_name, row) => {
    const outcome = await run(row.packet, { first: row.first ?? false, awaited: row.frames });
    expect({ ...outcome, frames: outcome.frames.sort() }).toEqual({ frames: row.frames.sort(), closed: false, refusals: [] });
  });

  it('stops at the violation: packets after it in the same read never reach aedes', async () => {
    const outcome = await run((id) => Buffer.concat([publish(`a/${id}`, { qos: 1, id: 0 }), publish(`a/${id}`, { qos: 1, id: 5 })]));
    expect(outcome).toEqual({ frames: [], closed: true, refusals: ['MQTT-2.3.1-1'] });
  });
});

describe('what aedes is told', () => {
  it('a catalogue code and the statement: MQTT_PROTOCOL_UNSUPPORTED for a protocol level, MQTT_PROTOCOL_VIOLATION otherwise', async () => {
    await run((id) => connect({ clientId: id, level: 6 }), { first: true });
    expect(seen.map(({ code, statement, message }) => ({ code, statement, message }))).toEqual([
      { code: 'MQTT_PROTOCOL_UNSUPPORTED', statement: 'MQTT-3.1.2-2', message: expect.stringMatching(/protocol level not supported .*\[MQTT-3\.1\.2-2\]$/) },
    ]);
    await run((id) => connect({ clientId: id, flags: 0x03 }), { first: true });
    expect(seen.map(({ code, statement }) => ({ code, statement }))).toEqual([{ code: 'MQTT_PROTOCOL_VIOLATION', statement: 'MQTT-3.1.2-3' }]);
  });
});

describe('pure checks', () => {
  const statementOf = (found: ConformanceViolation | undefined) => found?.statement;

  it.each([
    ['#', undefined],
    ['+', undefined],
    ['/', undefined],
    ['a//b', undefined],
    ['+/+', undefined],
    ['/+', undefined],
    ['+/', undefined],
    ['a/+/#', undefined],
    ['/#', undefined],
    ['$SYS/#', undefined],
    ['', 'MQTT-4.7.3-1'],
    ['a#', 'MQTT-4.7.1-2'],
    ['#/a', 'MQTT-4.7.1-2'],
    ['a/#/b', 'MQTT-4.7.1-2'],
    ['##', 'MQTT-4.7.1-2'],
    ['a+', 'MQTT-4.7.1-3'],
    ['+a', 'MQTT-4.7.1-3'],
    ['++', 'MQTT-4.7.1-3'],
    ['a/b+/c', 'MQTT-4.7.1-3'],
    ['+#', 'MQTT-4.7.1-3'],
  ])('topic filter %j → %s', (filter, statement) => {
    expect(statementOf(topicFilterViolation(filter))).toBe(statement);
  });

  it.each([
    ['a/b', undefined],
    ['/', undefined],
    ['$fleetgate/x', undefined],
    ['', 'MQTT-4.7.3-1'],
    ['a/+', 'MQTT-3.3.2-2'],
    ['a/#', 'MQTT-3.3.2-2'],
    ['a+b', 'MQTT-3.3.2-2'],
  ])('topic name %j → %s', (topic, statement) => {
    expect(statementOf(topicNameViolation(topic))).toBe(statement);
  });

  it.each([
    ['ascii', [0x61], undefined],
    ['é, 😀', [0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80], undefined],
    ['a well-formed U+FFFD', [0xef, 0xbf, 0xbd], undefined],
    ['U+FFFF (a noncharacter, allowed)', [0xef, 0xbf, 0xbf], undefined],
    ['0xFF', [0x61, 0xff], 'MQTT-1.5.3-1'],
    ['a lone continuation byte', [0x80], 'MQTT-1.5.3-1'],
    ['an overlong "/"', [0xc0, 0xaf], 'MQTT-1.5.3-1'],
    ['an overlong NUL', [0xc0, 0x80], 'MQTT-1.5.3-1'],
    ['a high surrogate', [0xed, 0xa0, 0x80], 'MQTT-1.5.3-1'],
    ['a low surrogate', [0xed, 0xbf, 0xbf], 'MQTT-1.5.3-1'],
    ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80], 'MQTT-1.5.3-1'],
    ['a truncated sequence', [0xe2, 0x82], 'MQTT-1.5.3-1'],
    ['U+0000', [0x61, 0x00], 'MQTT-1.5.3-2'],
  ])('string bytes: %s → %s', (_what, bytes, statement) => {
    const raw = Buffer.from(bytes);
    const text = raw.toString('utf8'); // how mqtt-packet decodes a string field
    expect(statementOf(mayBreakStringRules(text) ? encodedStringViolation(text, raw) : undefined)).toBe(statement);
  });

  it('names an mqtt-packet error it does not know a malformed packet [MQTT-4.8.0-1]', () => {
    expect(parserErrorViolation('Cannot parse topic').statement).toBe('MQTT-4.8.0-1');
    expect(parserErrorViolation('Invalid protocol version')).toMatchObject({ statement: 'MQTT-3.1.2-2', unsupportedProtocol: true });
  });
});
