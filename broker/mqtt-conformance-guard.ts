import type { Client } from 'aedes';
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { encodedStringViolation, mayBreakStringRules, packetViolation, parserErrorViolation, type ConformanceViolation, type ParsedPacket } from './mqtt-conformance.ts';

/**
 * Puts the MQTT 3.1.1 rules of broker/mqtt-conformance.ts between mqtt-packet and aedes, per connection:
 * - every packet the parser emits is checked before aedes' own listener (lib/client.js `enqueue`) sees it;
 * - every UTF-8 string the parser decodes is checked on its raw bytes where the decoded text cannot tell;
 * - the parser's own errors are named after the statement they enforce.
 * A violation closes the connection the way aedes closes it for a malformed packet (its parser 'error'
 * path: the socket is destroyed and the will is published [MQTT-3.1.2-8]); an unsupported protocol level
 * is first answered with CONNACK 0x01 [MQTT-3.1.2-2]. Nothing after the violation reaches aedes.
 */
export interface ConformanceGuard {
  /** Right after `aedes.handle(socket)`, before any byte is parsed. */
  attach(client: Client): void;
  /** A violation found outside the parser (broker/frame-guard.ts reads the fixed header first): refuse it the same way. */
  refuse(client: Client, violation: ConformanceViolation): void;
}

/** The mqtt-packet 9 parser internals the guard wraps (mqtt-packet/parser.js). */
interface ParserInternals extends EventEmitter {
  _pos: number;
  _list: { slice(start: number, end: number): Buffer };
  _parseString(): string | null;
  _emitError(error: Error): void;
}

type Listener = (this: ParserInternals, value: unknown) => void;

/**
 * What aedes is handed to close the connection with, and reports as 'clientError' / 'connectionError':
 * a catalogue code, which broker/protocol-refusals.ts audits (sampled, by flow control), and the statement.
 */
export class ConformanceError extends Error {
  readonly code: 'MQTT_PROTOCOL_UNSUPPORTED' | 'MQTT_PROTOCOL_VIOLATION';
  readonly statement: string;
  constructor(readonly violation: ConformanceViolation) {
    super(`${violation.reason} [${violation.statement}]`);
    this.code = violation.unsupportedProtocol ? 'MQTT_PROTOCOL_UNSUPPORTED' : 'MQTT_PROTOCOL_VIOLATION';
    this.statement = violation.statement;
  }
}

/** CONNACK, session present 0, return code 0x01 "unacceptable protocol version" (MQTT 3.1.1 §3.2.2.3). */
const connackUnacceptableProtocol = Buffer.from([0x20, 0x02, 0x00, 0x01]);

export function createConformanceGuard(): ConformanceGuard {
  return {
    refuse(client, violation) {
      (client as unknown as { _parser: ParserInternals })._parser._emitError(new ConformanceError(violation));
    },

    attach(client) {
      const internals = client as unknown as { _parser: ParserInternals; conn: Duplex };
      const parser = internals._parser;
      let connected = false;
      let encoding: ConformanceViolation | undefined;
      let refused = false;

      const parseString = parser._parseString;
      parser._parseString = function (this: ParserInternals) {
        const start = this._pos + 2; // after the two length bytes [MQTT-1.5.3]
        const text = parseString.call(this);
        if (text !== null && encoding === undefined && mayBreakStringRules(text)) encoding = encodedStringViolation(text, this._list.slice(start, this._pos));
        return text;
      };

      const aedesPacket = parser.listeners('packet') as Listener[];
      const aedesError = parser.listeners('error') as Listener[];
      parser.removeAllListeners('packet');
      parser.removeAllListeners('error');

      parser.on('packet', function (this: ParserInternals, packet: ParsedPacket) {
        if (refused) return;
        const found = packetViolation(packet, connected, encoding);
        encoding = undefined;
        if (packet.cmd === 'connect') connected = true;
        // _emitError stops the parser's loop: no later packet of the same read is parsed.
        if (found !== undefined) return this._emitError(new ConformanceError(found));
        for (let i = 0; i < aedesPacket.length; i++) aedesPacket[i]?.call(this, packet);
      });

      parser.on('error', function (this: ParserInternals, error: Error) {
        // Once refused, the connection is closing; what the parser still finds changes nothing.
        if (refused) return;
        refused = true;
        // mqtt-packet's own refusals are named after the statement they enforce, like ours.
        const refusal = error instanceof ConformanceError ? error : new ConformanceError(parserErrorViolation(error.message));
        const close = () => {
          for (const listener of aedesError) listener.call(this, refusal);
        };
        if (refusal.violation.unsupportedProtocol) internals.conn.write(connackUnacceptableProtocol, close);
        else close();
      });
    },
  };
}
