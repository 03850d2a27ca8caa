import { isUtf8 } from 'node:buffer';

/**
 * The MQTT 3.1.1 rules whose breach must close the Network Connection, checked on what mqtt-packet 9 parsed
 * before aedes acts on it. mqtt-packet already refuses reserved fixed-header flags [MQTT-2.2.2-2], PUBLISH
 * QoS 3 [MQTT-3.3.1-4], protocol names other than MQTT/MQIsdp [MQTT-3.1.2-1], levels other than 3, 4 and 5,
 * the reserved CONNECT flag [MQTT-3.1.2-3], will QoS/retain without the will flag [MQTT-3.1.2-13/15] and bad
 * SUBSCRIBE options [MQTT-3.8.3-4]; `parserErrorViolation` names the statement behind each of its errors.
 * Everything else it lets through is checked here. Pure functions; broker/mqtt-conformance-guard.ts hooks
 * them between the parser and aedes. Valid packets allocate nothing: this runs on every PUBLISH.
 */

export interface ConformanceViolation {
  /** The normative statement of MQTT 3.1.1 that was broken, e.g. "MQTT-2.3.1-1". */
  readonly statement: string;
  readonly reason: string;
  /** [MQTT-3.1.2-2]: an unsupported protocol level is answered with CONNACK 0x01 before the close. */
  readonly unsupportedProtocol?: true;
}

/** The fields of an mqtt-packet 9 packet that the rules read (mqtt-packet/parser.js). */
export interface ParsedPacket {
  readonly cmd: string;
  /** Remaining Length of the fixed header. */
  readonly length: number;
  readonly qos?: number;
  readonly dup?: boolean;
  readonly messageId?: number;
  readonly topic?: string | null;
  readonly subscriptions?: readonly { readonly topic: string }[];
  readonly unsubscriptions?: readonly string[];
  readonly protocolId?: string;
  readonly protocolVersion?: number;
  readonly bridgeMode?: boolean;
  readonly clientId?: string;
  readonly will?: { readonly topic: string; readonly payload: Uint8Array; readonly qos: number } | null;
  readonly username?: string;
  readonly password?: Uint8Array;
}

const violation = (statement: string, reason: string): ConformanceViolation => Object.freeze({ statement, reason });

// One frozen object per rule, so that a refusal does not allocate either.
const notConnectFirst = violation('MQTT-3.1.0-1', 'a packet before CONNECT (the first packet must be CONNECT)');
const secondConnect = violation('MQTT-3.1.0-2', 'a second CONNECT on the same connection');
const unsupportedLevel = Object.freeze({ statement: 'MQTT-3.1.2-2', reason: 'protocol level not supported (MQTT 3.1.1 is "MQTT" level 4, MQTT 3.1 is "MQIsdp" level 3)', unsupportedProtocol: true as const });
const willQos3 = violation('MQTT-3.1.2-14', 'will QoS 3');
const passwordWithoutUsername = violation('MQTT-3.1.2-22', 'password flag set without the user name flag');
const packetIdZero = violation('MQTT-2.3.1-1', 'packet identifier 0');
const dupOnQos0 = violation('MQTT-3.3.1-2', 'DUP flag set on a QoS 0 PUBLISH');
const emptyTopic = violation('MQTT-4.7.3-1', 'zero-length topic name or filter');
const wildcardInTopicName = violation('MQTT-3.3.2-2', 'wildcard character in a topic name');
const misplacedMultiLevel = violation('MQTT-4.7.1-2', '"#" must be the last character of a filter and alone in its level');
const misplacedSingleLevel = violation('MQTT-4.7.1-3', '"+" must occupy an entire level of a filter');
const emptySubscribe = violation('MQTT-3.8.3-3', 'SUBSCRIBE without a topic filter');
const emptyUnsubscribe = violation('MQTT-3.10.3-2', 'UNSUBSCRIBE without a topic filter');
const illFormedUtf8 = violation('MQTT-1.5.3-1', 'ill-formed UTF-8 in a string (invalid byte, overlong form, surrogate or truncated sequence)');
const nullCharacter = violation('MQTT-1.5.3-2', 'U+0000 in a string');
const serverPacket = violation('MQTT-4.8.0-1', 'a packet type only a server may send');
const badLength = violation('MQTT-4.8.0-1', 'Remaining Length does not match the packet');
export const remainingLengthTooLong = violation('MQTT-4.8.0-1', 'Remaining Length longer than four bytes (§2.2.3)');

/** What a client may send (MQTT 3.1.1 §2.2.1); CONNACK, SUBACK, UNSUBACK and PINGRESP go server to client. */
const fromClient = new Set(['connect', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'unsubscribe', 'pingreq', 'disconnect']);

/**
 * Checks one packet. `connected`: a CONNECT came before on this connection. `encoding`: the first broken
 * string rule found while the packet was parsed (see `encodedStringViolation`), which mqtt-packet hides by
 * decoding ill-formed UTF-8 to U+FFFD.
 */
export function packetViolation(packet: ParsedPacket, connected: boolean, encoding: ConformanceViolation | undefined): ConformanceViolation | undefined {
  switch (packet.cmd) {
    case 'publish':
      if (!connected) return notConnectFirst;
      if (encoding !== undefined) return encoding;
      if (packet.qos !== 0 ? packet.messageId === 0 : packet.dup === true) return packet.qos !== 0 ? packetIdZero : dupOnQos0;
      return topicNameViolation(packet.topic ?? '');
    case 'connect':
      return connected ? secondConnect : connectViolation(packet, encoding);
    case 'subscribe':
      if (!connected) return notConnectFirst;
      return encoding ?? (packet.messageId === 0 ? packetIdZero : undefined) ?? filtersViolation(packet.subscriptions ?? [], emptySubscribe);
    case 'unsubscribe':
      if (!connected) return notConnectFirst;
      return encoding ?? (packet.messageId === 0 ? packetIdZero : undefined) ?? filtersViolation(packet.unsubscriptions ?? [], emptyUnsubscribe);
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      if (!connected) return notConnectFirst;
      return packet.length === 2 ? undefined : badLength;
    case 'pingreq':
    case 'disconnect':
      if (!connected) return notConnectFirst;
      return packet.length === 0 ? undefined : badLength;
    default:
      return fromClient.has(packet.cmd) ? undefined : serverPacket;
  }
}

function connectViolation(packet: ParsedPacket, encoding: ConformanceViolation | undefined): ConformanceViolation | undefined {
  // The level decides which specification applies, so it is checked first [MQTT-3.1.2-2]. mqtt-packet reads
  // a level with bit 7 set as a "bridge" flag (a Mosquitto extension); MQTT 3.1.1 does not know it.
  const level = packet.bridgeMode === true ? -1 : packet.protocolVersion;
  if (!((packet.protocolId === 'MQTT' && level === 4) || (packet.protocolId === 'MQIsdp' && level === 3))) return unsupportedLevel;
  if (encoding !== undefined) return encoding;
  const { will } = packet;
  if (will) {
    if (will.qos === 3) return willQos3;
    // The will is published to its topic, so it is a topic name, not a filter [MQTT-3.3.2-2].
    const topic = topicNameViolation(will.topic);
    if (topic !== undefined) return topic;
  }
  if (packet.password !== undefined && packet.username === undefined) return passwordWithoutUsername;
  // mqtt-packet stops reading after the last field the flags announce; anything after it is not a CONNECT.
  return packet.length === connectLength(packet) ? undefined : badLength;
}

/** The Remaining Length a CONNECT with exactly these fields has (MQTT 3.1.1 §3.1). */
function connectLength(packet: ParsedPacket): number {
  const string = (text: string) => 2 + Buffer.byteLength(text, 'utf8');
  let length = string(packet.protocolId ?? '') + 1 + 1 + 2 + string(packet.clientId ?? '');
  if (packet.will) length += string(packet.will.topic) + 2 + packet.will.payload.length;
  if (packet.username !== undefined) length += string(packet.username);
  if (packet.password !== undefined) length += 2 + packet.password.length;
  return length;
}

export function topicNameViolation(topic: string): ConformanceViolation | undefined {
  if (topic.length === 0) return emptyTopic;
  return topic.includes('+') || topic.includes('#') ? wildcardInTopicName : undefined;
}

/** A topic filter's wildcards, character by character (no split: filters come in every SUBSCRIBE). */
export function topicFilterViolation(filter: string): ConformanceViolation | undefined {
  if (filter.length === 0) return emptyTopic;
  const last = filter.length - 1;
  for (let i = 0; i <= last; i++) {
    const char = filter.charCodeAt(i);
    const levelStart = i === 0 || filter.charCodeAt(i - 1) === 0x2f;
    if (char === 0x23 && !(levelStart && i === last)) return misplacedMultiLevel;
    if (char === 0x2b && !(levelStart && (i === last || filter.charCodeAt(i + 1) === 0x2f))) return misplacedSingleLevel;
  }
  return undefined;
}

function filtersViolation(filters: readonly (string | { readonly topic: string })[], empty: ConformanceViolation): ConformanceViolation | undefined {
  if (filters.length === 0) return empty;
  for (const filter of filters) {
    const found = topicFilterViolation(typeof filter === 'string' ? filter : filter.topic);
    if (found !== undefined) return found;
  }
  return undefined;
}

const suspicious = /[\u0000\uFFFD]/;

/**
 * Whether a UTF-8 string field, as mqtt-packet decoded it, needs `encodedStringViolation`. Node's decoder
 * turns every ill-formed sequence (invalid bytes, overlong forms, surrogates, truncated sequences) into
 * U+FFFD, so a string with neither U+FFFD nor U+0000 is well-formed: the common case costs one scan.
 */
export function mayBreakStringRules(text: string): boolean {
  return suspicious.test(text);
}

/** A decoded string field and its raw bytes: a well-formed U+FFFD is allowed, only its raw bytes tell. */
export function encodedStringViolation(text: string, raw: Uint8Array): ConformanceViolation | undefined {
  if (!suspicious.test(text)) return undefined;
  if (text.includes('\u0000')) return nullCharacter;
  return isUtf8(raw) ? undefined : illFormedUtf8;
}

/** mqtt-packet's own refusals (mqtt-packet/parser.js error messages), by the statement they enforce. */
const parserErrors: readonly [RegExp, ConformanceViolation][] = [
  [/^Invalid header flag bits/, violation('MQTT-2.2.2-2', 'reserved flag bits of the fixed header are not as MQTT 3.1.1 Table 2.2 requires')],
  [/^Packet must not have both QoS bits set to 1/, violation('MQTT-3.3.1-4', 'PUBLISH with QoS 3')],
  [/^Invalid protocolId/, violation('MQTT-3.1.2-1', 'protocol name other than "MQTT" or "MQIsdp"')],
  [/^Invalid protocol version/, unsupportedLevel],
  [/^Connect flag bit 0 must be 0/, violation('MQTT-3.1.2-3', 'reserved CONNECT flag set')],
  [/^Will QoS must be set to zero/, violation('MQTT-3.1.2-13', 'will QoS set without the will flag')],
  [/^Will Retain Flag must be set to zero/, violation('MQTT-3.1.2-15', 'will retain set without the will flag')],
  [/^Invalid subscribe (topic flag bits|QoS)/, violation('MQTT-3.8.3-4', 'SUBSCRIBE options with reserved bits set or QoS 3')],
  [/^Malformed subscribe, no payload/, emptySubscribe],
  [/^Malformed unsubscribe, no payload/, emptyUnsubscribe],
  [/^Invalid variable byte integer/, remainingLengthTooLong],
];
const malformed = violation('MQTT-4.8.0-1', 'malformed packet');

export function parserErrorViolation(message: string): ConformanceViolation {
  return parserErrors.find(([pattern]) => pattern.test(message))?.[1] ?? malformed;
}
