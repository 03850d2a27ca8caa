import type { Aedes, AedesPublishPacket, Client, PublishPacket } from 'aedes';
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';

/**
 * The one file of fleetgate that reaches into aedes, mqemitter, mqtt-packet and aedes-persistence past
 * their documented API: private fields, replaced methods, casts. Every other broker file calls the small
 * typed functions below. Each patch names the upstream code it replaces (in the versions pinned below)
 * and why; they are exactly what a new release of those packages could silently break, so the broker
 * refuses to start on any other version (`assertPinnedVersions`, called by broker/gateway-broker.ts).
 * The ones worth proposing upstream are listed in docs/architecture.md ("aedes internals").
 */

/** The versions every patch here was written and tested against; package.json pins them exactly. */
export const pinnedVersions = {
  aedes: '1.2.0',
  mqemitter: '7.1.0',
  'mqtt-packet': '9.0.2',
  'aedes-persistence': '11.0.0',
  /** A cluster's emitter: two of its fields are used below (`emit`, `state`). */
  'mqemitter-redis': '7.2.1',
} as const;

export type PinnedPackage = keyof typeof pinnedVersions;
export type FoundVersions = Readonly<Record<PinnedPackage, string | undefined>>;

/** The `package.json` above a resolved entry point (aedes exports no `./package.json`). */
function packageVersion(entry: string, name: string): string | undefined {
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name === name) return typeof manifest.version === 'string' ? manifest.version : undefined;
    } catch {
      // no package.json at this level: keep climbing
    }
  }
  return undefined;
}

/**
 * The versions installed, as aedes itself resolves them: its dependencies are looked up from aedes' own
 * location, so a nested copy (node_modules/aedes/node_modules/mqemitter) is the one that counts.
 */
export function installedVersions(): FoundVersions {
  const fromHere = createRequire(import.meta.url);
  let aedesEntry: string;
  try {
    aedesEntry = fromHere.resolve('aedes');
  } catch {
    return { aedes: undefined, mqemitter: undefined, 'mqtt-packet': undefined, 'aedes-persistence': undefined, 'mqemitter-redis': undefined };
  }
  const fromAedes = createRequire(aedesEntry);
  const versionOf = (name: string) => {
    try {
      return packageVersion(fromAedes.resolve(name), name);
    } catch {
      return undefined;
    }
  };
  let redisEmitter: string | undefined;
  try {
    // fleetgate's own dependency (broker/cluster/redis-cluster.ts), not aedes'
    redisEmitter = packageVersion(fromHere.resolve('mqemitter-redis'), 'mqemitter-redis');
  } catch {
    redisEmitter = undefined;
  }
  return {
    aedes: packageVersion(aedesEntry, 'aedes'),
    mqemitter: versionOf('mqemitter'),
    'mqtt-packet': versionOf('mqtt-packet'),
    'aedes-persistence': versionOf('aedes-persistence'),
    'mqemitter-redis': redisEmitter,
  };
}

/** Why these versions cannot be used, naming the expected and found version of each package off the pin; undefined when all match. */
export function versionMismatch(found: FoundVersions): string | undefined {
  const wrong = (Object.keys(pinnedVersions) as PinnedPackage[]).filter((name) => found[name] !== pinnedVersions[name]);
  if (wrong.length === 0) return undefined;
  const list = wrong.map((name) => `${name} ${pinnedVersions[name]} expected, ${found[name] ?? 'none'} found`).join('; ');
  return (
    `fleetgate's broker patches internals of aedes and its parts (broker/aedes-internals.ts) and runs only on the versions it was tested with: ${list}. ` +
    'Install the versions pinned in package.json (`npm ci`); to move to a new release, re-check every patch in broker/aedes-internals.ts against it first, then change the pins there and in package.json.'
  );
}

let checked = false;

/** Throws, with what to do, unless the pinned versions are the ones installed. Reads the disk once per process. */
export function assertPinnedVersions(found?: FoundVersions): void {
  if (found === undefined && checked) return;
  const problem = versionMismatch(found ?? installedVersions());
  if (problem !== undefined) throw new Error(problem);
  if (found === undefined) checked = true;
}

// ---------------------------------------------------------------------------------------------------------
// The client table and a client's subscriptions (aedes.js, lib/client.js)
// ---------------------------------------------------------------------------------------------------------

/**
 * aedes keeps its local clients in `aedes.clients`, a null-prototype object by client id (aedes.js
 * constructor; `registerClient` / `unregisterClient`), and does not type or document it. Only this
 * broker's clients are there, never those of other cluster nodes.
 */
interface AedesTable {
  clients: Record<string, Client | undefined>;
  mq: unknown;
  persistence: { delWill(client: { id: string; brokerId: string }): Promise<unknown> };
}
const tableOf = (aedes: Aedes) => aedes as unknown as AedesTable;

/** Every client registered on this broker (CONNECT admitted), in no particular order. */
export function listClients(aedes: Aedes): Client[] {
  return Object.values(tableOf(aedes).clients).filter((client): client is Client => client !== undefined);
}

/** The client registered under this id on this broker, if any (after a takeover, the newer one). */
export function clientById(aedes: Aedes, clientId: string): Client | undefined {
  return tableOf(aedes).clients[clientId];
}

/** The topic filters this client is subscribed to (lib/client.js keeps them in `client.subscriptions`, keyed by filter). */
export function subscriptionsOf(client: Client): string[] {
  return Object.keys((client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {});
}

/**
 * Removes subscriptions as if the client had sent UNSUBSCRIBE, without an UNSUBACK (it did not ask): aedes'
 * `client.unsubscribe` accepts a bare list of filters (lib/client.js `unsubscribe`, which wraps it into a
 * packet with no message id, so lib/handlers/unsubscribe.js sends nothing back). The typings only admit a
 * packet with a message id.
 */
export function unsubscribe(client: Client, filters: readonly string[], done: (error?: Error) => void): void {
  (client as unknown as { unsubscribe(filters: string[], done: (error?: Error) => void): void }).unsubscribe([...filters], done);
}

// ---------------------------------------------------------------------------------------------------------
// Wills (lib/client.js `close`, lib/handlers/connect.js; aedes-persistence `delWill`)
// ---------------------------------------------------------------------------------------------------------

export interface Will {
  readonly topic: string;
  readonly retain?: boolean;
}

/**
 * Takes the will off a client so that `client.close()` publishes nothing. aedes keeps the will of a
 * connecting client in `_will` and moves it to `will` once stored (lib/handlers/connect.js); `close()` in
 * lib/client.js publishes `will` unless the client sent DISCONNECT. aedes has no public way to drop a will.
 * Upstream candidate: `client.close({ discardWill: true })`.
 */
export function takeWill(client: Client): Will | undefined {
  const internals = client as unknown as { will: Will | null | undefined; _will: Will | null | undefined };
  const will = internals.will ?? internals._will; // `_will` is undefined for a CONNECT without one
  internals.will = null;
  internals._will = null;
  return will ?? undefined;
}

/**
 * Deletes the will stored for this client on this broker (aedes-persistence `delWill`, as lib/client.js
 * `close` does it), so that no other cluster node publishes it should this broker die. `aedes.persistence`
 * is untyped.
 */
export function deleteStoredWill(aedes: Aedes, clientId: string): Promise<unknown> {
  return tableOf(aedes).persistence.delWill({ id: clientId, brokerId: aedes.id });
}

// ---------------------------------------------------------------------------------------------------------
// Ingress: reads, parsing and the end of a client PUBLISH (lib/client.js, lib/handlers/publish.js)
// ---------------------------------------------------------------------------------------------------------

export type Read = (size?: number) => unknown;

/**
 * Puts a function in front of `conn.read()`. aedes reads a connection only through `conn.read(null)` in
 * `nextBatch` (lib/client.js constructor, on 'readable' and after each handled packet) and hands the whole
 * chunk to mqtt-packet; answering null leaves the bytes in the socket (TCP back-pressure), and looking at
 * the chunk first sees every byte before it is parsed. Used by broker/frame-guard.ts (packet size) and
 * broker/ingress-flow-control.ts (the read gate). Upstream candidate: a per-client "may I read more"
 * hook, and a `maxPacketSize` option (mqtt-packet buffers up to 256 MB per packet).
 */
export function interceptReads(conn: Duplex, intercept: (read: Read) => Read): void {
  const read: Read = conn.read.bind(conn);
  conn.read = intercept(read) as Duplex['read'];
}

/**
 * Runs `around` each time aedes hands a chunk to this client's parser (`client._parser.parse`, called
 * from `nextBatch`), to know when a parse is on the stack: a packet handled synchronously calls
 * `nextBatch`, which reads and parses the next chunk inside the current parse.
 */
export function interceptParse(client: Client, around: (parse: () => unknown) => unknown): void {
  const parser = parserOf(client);
  const parse = parser.parse.bind(parser);
  parser.parse = (buffer: Buffer) => around(() => parse(buffer));
}

/**
 * Reads and parses the next chunk of a client whose reads were held back, if aedes has no packet of the
 * last chunk still in hand. aedes counts packets in hand in `_parsingBatch` and reads only when `nextBatch`
 * brings it to 0; the increment makes this call neutral to that count (lib/client.js `nextBatch`). aedes'
 * own accounting leaks (each 'readable' also counts as a finished packet), which is why the reads are gated
 * from outside at all. Upstream candidate: parse-batch back-pressure (a bound on packets in hand per client).
 */
export function readNextBatch(client: Client): void {
  const internals = client as unknown as { _parsingBatch: number; _nextBatch: (error?: Error) => void };
  internals._parsingBatch++;
  internals._nextBatch();
}

export type ClientPublish = (packet: PublishPacket, client: Client | null, done: (error?: Error) => void) => void;

/**
 * Every client PUBLISH ends in `aedes.publish(packet, client, done)` with the very packet object the
 * authorizePublish hook saw (lib/handlers/publish.js); the typed `publish(packet, done)` is the API form
 * without a client. This replaces `Aedes.prototype.publish` (aedes.js) on this instance: `intercept` sees
 * the client form and calls `publish` to go on (or not); the API form passes straight through. Used by
 * broker/ingress-flow-control.ts to drop rate-limited QoS 0 packets after they were authorized (an
 * authorizePublish error would close the connection) and to know when aedes is done with a packet.
 * Upstream candidate: a `published`-like hook that may drop, and a completion callback for client publishes.
 */
export function interceptClientPublishes(aedes: Aedes, intercept: (packet: PublishPacket, client: Client | null, done: (error?: Error) => void, publish: ClientPublish) => void): void {
  const instance = aedes as unknown as { publish: (packet: PublishPacket, clientOrDone: unknown, done?: unknown) => void };
  const original = instance.publish.bind(aedes);
  const publish: ClientPublish = (packet, client, done) => original(packet, client, done);
  instance.publish = (packet, clientOrDone, done) => {
    if (typeof clientOrDone === 'function' || clientOrDone === undefined) return original(packet, clientOrDone);
    intercept(packet, clientOrDone as Client | null, done as (error?: Error) => void, publish);
  };
}

// ---------------------------------------------------------------------------------------------------------
// Egress: a client's deliver functions (lib/client.js constructor, lib/handlers/subscribe.js)
// ---------------------------------------------------------------------------------------------------------

export type Deliver = (packet: AedesPublishPacket, callback: () => void) => void;
export interface Delivery {
  readonly deliver0: Deliver;
  readonly deliverQoS: Deliver;
}

/**
 * Replaces a client's `deliver0` / `deliverQoS`, which the emitter calls for each message to this
 * subscriber and which call back only once the socket took the bytes (lib/client.js constructor; aedes
 * downgrades QoS 0 by calling `deliver0` from `deliverQoS`). lib/handlers/subscribe.js captures them when a
 * subscription is made, so this must run right after `aedes.handle()`. Used by broker/outbound-queue-limit.ts
 * to release the shared emitter at once and bound each subscriber's own queue. Upstream candidate: a
 * per-client outbound queue limit (messages and bytes) with a drop/close policy.
 */
export function wrapDelivery(client: Client, wrap: (original: Delivery) => Delivery): void {
  const internals = client as unknown as { deliver0: Deliver; deliverQoS: Deliver };
  const wrapped = wrap({ deliver0: internals.deliver0, deliverQoS: internals.deliverQoS });
  internals.deliver0 = wrapped.deliver0;
  internals.deliverQoS = wrapped.deliverQoS;
}

/** Retained messages sent on SUBSCRIBE carry `brokerId: null` (lib/handlers/subscribe.js); routed ones carry the publishing broker's id. */
export function isRetainedReplay(packet: AedesPublishPacket): boolean {
  return packet.retain && (packet as { brokerId?: string | null }).brokerId === null;
}

// ---------------------------------------------------------------------------------------------------------
// The message emitter (mqemitter, and mqemitter-redis built on it)
// ---------------------------------------------------------------------------------------------------------

/** aedes' emitter: mqemitter by default, mqemitter-redis in a cluster (aedes.js constructor, `this.mq`). */
export function emitterOf(aedes: Aedes): unknown {
  return tableOf(aedes).mq;
}

/**
 * mqemitter runs at most `concurrency` messages at once and queues the rest. When a message finishes,
 * `released()` (mqemitter.js constructor) starts the next queued one through `_do` from inside the
 * finishing call; when that one finishes synchronously too (no subscriber matched, or every listener
 * answered at once), it starts the next, and so on: one stack frame chain per queued message. After a
 * flood, with tens of thousands queued, that ends in `RangeError: Maximum call stack size exceeded` and the
 * process dies (as our flood and QoS 0 benchmark runs did: bench/RESULTS.md).
 *
 * This replaces `MQEmitter.prototype._do` on the instance: a `_do` started while another `_do` is on the
 * stack is queued and run, in order, once the outer one returns. Order is kept (first in, first out), and
 * nothing waits for the event loop, so no newer message can overtake a queued one. Upstream candidate:
 * mqemitter draining its queue in a loop instead of by recursion.
 */
export function preventEmitterRecursion(emitter: unknown): void {
  const internals = emitter as { _do(message: unknown, callback: unknown): unknown };
  const run = internals._do.bind(internals);
  // Drained by index, not shift(): past ~16k entries an array lives in V8's large-object space, where
  // shift() cannot trim in place and copies the rest, so a backlog would be drained in quadratic time.
  let pending: [unknown, unknown][] = [];
  let running = false;
  internals._do = (message, callback) => {
    if (running) {
      pending.push([message, callback]);
      return internals;
    }
    running = true;
    let next = 0;
    try {
      run(message, callback);
      while (next < pending.length) {
        const [queuedMessage, queuedCallback] = pending[next++] as [unknown, unknown];
        run(queuedMessage, queuedCallback);
      }
    } finally {
      // After a throw, what was not run yet stays queued for the next _do, as before.
      pending = next < pending.length ? pending.slice(next) : [];
      running = false;
    }
    return internals;
  };
}

/**
 * A first-in-first-out queue with the part of the Array interface mqemitter uses on its queues (push,
 * shift, length), where shift is O(1): it moves a head index and compacts once the consumed half is large.
 */
class FifoQueue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): number {
    this.#items.push(item);
    return this.length;
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head >= 4096 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/**
 * mqemitter queues the messages beyond its `concurrency` in two arrays and takes each next one with
 * `Array#shift` (`released()`, mqemitter.js constructor). Past ~16,000 entries an array lives in V8's
 * large-object space, where shift cannot trim in place and copies the rest: a backlog after a burst of
 * QoS 0 traffic is then drained in quadratic time on the main thread (30,000 queued: ~2.5 s of shifting on
 * this machine), which stalls every session. This swaps the instance's two queues (empty right after the
 * broker was created, their order kept otherwise) for queues whose shift is O(1); mqemitter-redis inherits them from mqemitter.
 * Upstream candidate: mqemitter using a linked or ring queue.
 */
export function useConstantTimeEmitterQueue(emitter: unknown): void {
  const internals = emitter as { _messageQueue: unknown[]; _messageCallbacks: unknown[] };
  const swap = (queued: unknown[]) => {
    const queue = new FifoQueue<unknown>();
    for (const item of queued) queue.push(item); // normally none yet (a cluster emitter may have started)
    return queue as unknown as unknown[];
  };
  internals._messageQueue = swap(internals._messageQueue);
  internals._messageCallbacks = swap(internals._messageCallbacks);
}

export type Emit = (packet: { topic: string; payload: Buffer }, done?: (error?: Error) => void) => unknown;

/**
 * Replaces an emitter's `emit` on the instance (`MQEmitter.prototype.emit`, which mqemitter-redis
 * overrides to PUBLISH to Redis and call back on Redis' answer). Used by broker/cluster/emit-backpressure.ts
 * to call back only once this node read its own messages back. Upstream candidate: mqemitter-redis
 * calling back on local delivery rather than on the PUBLISH reply.
 */
export function interceptEmits(emitter: unknown, intercept: (emit: Emit) => Emit): void {
  const mq = emitter as { emit: Emit };
  mq.emit = intercept(mq.emit.bind(mq));
}

/**
 * mqemitter-redis re-emits its connections' errors on `mq.state`, an EventEmitter; an 'error' nobody
 * listens to would throw and take the broker down. The connections log their own errors, so this only
 * keeps the process up.
 */
export function ignoreRedisEmitterErrors(emitter: unknown): void {
  (emitter as { state: EventEmitter }).state.on('error', () => {});
}

// ---------------------------------------------------------------------------------------------------------
// The parser (mqtt-packet parser.js, as lib/client.js wires it)
// ---------------------------------------------------------------------------------------------------------

/** The mqtt-packet 9 parser internals used here (mqtt-packet/parser.js). */
interface ParserInternals extends EventEmitter {
  parse(buffer: Buffer): unknown;
  _pos: number;
  _list: { slice(start: number, end: number): Buffer };
  _parseString(): string | null;
  _emitError(error: Error): void;
}
type ParserListener = (this: ParserInternals, value: unknown) => void;

const parserOf = (client: Client) => (client as unknown as { _parser: ParserInternals })._parser;

/** What a conformance check sees between mqtt-packet and aedes (broker/mqtt-conformance-guard.ts). */
export interface ParserInterception {
  /** Each UTF-8 string field as decoded, with a way to get the raw bytes it was decoded from. */
  string(text: string, bytes: () => Buffer): void;
  /** Each parsed packet: `pass()` hands it to aedes; `fail(error)` stops the parser instead (nothing later in the read is parsed). */
  packet(packet: unknown, pass: () => void, fail: (error: Error) => void): void;
  /** Each parser error (mqtt-packet's own, or from `fail`): `close(error)` hands aedes the error, which closes the connection. */
  error(error: Error, close: (error: Error) => void): void;
}

/**
 * Sits between a client's parser and aedes. lib/client.js registers `enqueue` on the parser's 'packet'
 * event and `client.emit('error')` on its 'error' event; both are taken off and called only through
 * `interception`. `_parseString` (mqtt-packet parser.js) is wrapped to see each string's raw bytes, which
 * the decoded text cannot show (invalid UTF-8 is replaced, not refused). Must run right after
 * `aedes.handle()`, before any byte is parsed. Upstream candidate: mqtt-packet refusing what MQTT 3.1.1
 * §1.5.3 and §3 forbid (invalid UTF-8, U+0000, QoS>0 with packet id 0, and the rest in broker/mqtt-conformance.ts).
 */
export function interceptParser(client: Client, interception: ParserInterception): void {
  const parser = parserOf(client);
  const parseString = parser._parseString;
  parser._parseString = function (this: ParserInternals) {
    const start = this._pos + 2; // after the two length bytes [MQTT-1.5.3]
    const text = parseString.call(this);
    if (text !== null) interception.string(text, () => this._list.slice(start, this._pos));
    return text;
  };

  const aedesPacket = parser.listeners('packet') as ParserListener[];
  const aedesError = parser.listeners('error') as ParserListener[];
  parser.removeAllListeners('packet');
  parser.removeAllListeners('error');

  parser.on('packet', function (this: ParserInternals, packet: unknown) {
    interception.packet(
      packet,
      () => {
        for (let i = 0; i < aedesPacket.length; i++) aedesPacket[i]?.call(this, packet);
      },
      (error) => this._emitError(error), // _emitError stops the parser's loop (mqtt-packet parser.js)
    );
  });
  parser.on('error', function (this: ParserInternals, error: Error) {
    interception.error(error, (refusal) => {
      for (const listener of aedesError) listener.call(this, refusal);
    });
  });
}

/** Fails a client's parser as mqtt-packet does for a malformed packet (`_emitError`): aedes closes the connection on it. */
export function failParser(client: Client, error: Error): void {
  parserOf(client)._emitError(error);
}
