import type { Socket } from 'node:net';
import type { Server, TLSSocket } from 'node:tls';
import { TokenBucket } from './token-bucket.ts';

export type ConnectionRefusal = 'MQTT_CONNECTION_LIMIT' | 'MQTT_HANDSHAKE_LIMIT' | 'MQTT_CONNECT_RATE_LIMITED';

export interface ConnectionAdmissionOptions {
  readonly maxConnections: number;
  readonly maxPendingHandshakes: number;
  readonly connectPerSecond: number;
  /** Every refusal, for metrics. */
  readonly onRefused: (code: ConnectionRefusal) => void;
  /**
   * At most one call per code and second, with how many refusals it stands for: in a reconnect storm an
   * audit row per refused socket would turn the storm into a write storm on the registry.
   */
  readonly onRefusalSummary: (code: ConnectionRefusal, detail: { refused: number; remote: string | undefined }) => void;
  readonly now?: () => number;
}

export interface ConnectionAdmission {
  /** In authenticate, before anything else: false means refuse with CONNACK 3 (MQTT_CONNECT_RATE_LIMITED). */
  admitConnect(remote: string | undefined): boolean;
  /** TLS handshakes in progress now. */
  pendingHandshakes(): number;
}

/**
 * Load shedding in front of the broker, cheapest first, so that a reconnect storm after a restart degrades
 * into retries instead of a collapse:
 * - `server.maxConnections`: Node closes sockets beyond it as they are accepted (the 'drop' event).
 * - handshakes in progress: a TLS handshake is the expensive part of a connection (an ECDSA signature and
 *   a certificate chain check); a socket accepted while too many are under way is closed before its
 *   ClientHello is answered. Clients see a reset and retry with their backoff.
 * - CONNECT rate: a token bucket over every session admitted; the refusal is CONNACK 3 "server
 *   unavailable", which MQTT clients treat as "retry later" (unlike 5, after which mqtt.js stops).
 */
export function createConnectionAdmission(server: Server, options: ConnectionAdmissionOptions): ConnectionAdmission {
  const now = options.now ?? (() => performance.now());
  const connects = new TokenBucket(options.connectPerSecond, options.connectPerSecond * 2, now());
  const handshaking = new WeakSet<Socket>();
  let pending = 0;
  const summaries = new Map<ConnectionRefusal, { refused: number; lastAt: number }>();

  const refused = (code: ConnectionRefusal, remote: string | undefined) => {
    options.onRefused(code);
    const at = now();
    const summary = summaries.get(code) ?? { refused: 0, lastAt: -Infinity };
    summary.refused++;
    summaries.set(code, summary);
    if (at - summary.lastAt >= 1000) {
      options.onRefusalSummary(code, { refused: summary.refused, remote });
      summary.refused = 0;
      summary.lastAt = at;
    }
  };

  server.maxConnections = options.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => refused('MQTT_CONNECTION_LIMIT', data?.remoteAddress));
  // tls.Server wraps the socket in its own 'connection' listener, registered before this one.
  server.on('connection', (socket: Socket) => {
    if (pending >= options.maxPendingHandshakes) {
      refused('MQTT_HANDSHAKE_LIMIT', socket.remoteAddress);
      socket.destroy();
      return;
    }
    pending++;
    handshaking.add(socket);
    socket.once('close', () => {
      if (handshaking.delete(socket)) pending--;
    });
  });
  server.on('secureConnection', (tlsSocket: TLSSocket) => {
    const raw = (tlsSocket as unknown as { _parent?: Socket })._parent;
    if (raw !== undefined && handshaking.delete(raw)) pending--;
  });

  return {
    admitConnect(remote) {
      if (connects.tryTake(1, now())) return true;
      refused('MQTT_CONNECT_RATE_LIMITED', remote);
      return false;
    },
    pendingHandshakes: () => pending,
  };
}
