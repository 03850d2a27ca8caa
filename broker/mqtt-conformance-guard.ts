import type { Client } from 'aedes';
import { failParser, interceptParser } from './aedes-internals.ts';
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
      failParser(client, new ConformanceError(violation));
    },

    attach(client) {
      let connected = false;
      let encoding: ConformanceViolation | undefined;
      let refused = false;

      interceptParser(client, {
        string(text, bytes) {
          if (encoding === undefined && mayBreakStringRules(text)) encoding = encodedStringViolation(text, bytes());
        },
        packet(value, pass, fail) {
          if (refused) return;
          const packet = value as ParsedPacket;
          const found = packetViolation(packet, connected, encoding);
          encoding = undefined;
          if (packet.cmd === 'connect') connected = true;
          // Failing stops the parser's loop: no later packet of the same read is parsed.
          if (found !== undefined) return fail(new ConformanceError(found));
          pass();
        },
        error(error, close) {
          // Once refused, the connection is closing; what the parser still finds changes nothing.
          if (refused) return;
          refused = true;
          // mqtt-packet's own refusals are named after the statement they enforce, like ours.
          const refusal = error instanceof ConformanceError ? error : new ConformanceError(parserErrorViolation(error.message));
          if (refusal.violation.unsupportedProtocol) client.conn.write(connackUnacceptableProtocol, () => close(refusal));
          else close(refusal);
        },
      });
    },
  };
}
