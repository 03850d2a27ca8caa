import type { Socket } from 'node:net';
import type { Server, TLSSocket } from 'node:tls';
import { sourceOf } from './source-address.ts';
import { TokenBucket } from './token-bucket.ts';

export type ConnectionRefusal =
  | 'MQTT_CONNECTION_LIMIT'
  | 'MQTT_HANDSHAKE_LIMIT'
  | 'MQTT_SOURCE_LIMIT'
  | 'MQTT_CONNECT_TIMEOUT'
  | 'TLS_HANDSHAKE_FAILED'
  | 'MQTT_CONNECT_RATE_LIMITED';

export interface ConnectionAdmissionOptions {
  readonly maxConnections: number;
  readonly maxPendingHandshakes: number;
  /** Handshakes in progress from one source (an IPv4 address or an IPv6 /64: broker/source-address.ts). */
  readonly maxPendingHandshakesPerSource: number;
  /** Open connections from one source, sessions included. */
  readonly maxConnectionsPerSource: number;
  /** From the TCP connection to an admitted MQTT session (TLS handshake and CONNECT); then the socket is closed. */
  readonly connectTimeoutMs: number;
  readonly connectPerSecond: number;
  /** Every refusal, once per socket: the caller counts it and audits it (sampled: broker/refusal-sampler.ts). */
  readonly onRefused: (code: ConnectionRefusal, remote: string | undefined, detail: Record<string, unknown>) => void;
  readonly now?: () => number;
}

export interface ConnectionAdmission {
  /** In authenticate, before anything else: false means refuse with CONNACK 3 (MQTT_CONNECT_RATE_LIMITED). */
  admitConnect(remote: string | undefined): boolean;
  /** The session on this TLS socket was admitted (aedes 'client'): its connect deadline no longer applies. */
  sessionAdmitted(conn: TLSSocket): void;
  /**
   * A finished handshake's socket gets the peer address already read from its raw socket when it was
   * accepted, before anyone asks the TLS socket for it (the listener's connection callback runs before this
   * module's 'secureConnection' listener). Node caches a socket's peer address per socket object, so the TLS
   * socket over the raw one would otherwise ask the kernel again (getpeername through the raw handle).
   */
  shareRemoteAddress(tls: TLSSocket): void;
  /** TLS handshakes in progress now. */
  pendingHandshakes(): number;
  /** Closes every connection that is not a session yet and stops the timers (the server is closing). */
  close(): void;
}

interface Tracked {
  readonly source: string;
  handshaking: boolean;
  tls?: TLSSocket;
  /** Until the session is admitted. */
  deadline?: ReturnType<typeof setTimeout>;
}

/** The errors by which Node reports that the peer left during the handshake: not a refusal. */
const peerLeft = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED']);

/**
 * Load shedding and slot accounting in front of the broker, cheapest first, so that a reconnect storm
 * degrades into retries instead of a collapse, and no one host can lock the fleet out:
 * - `server.maxConnections`: Node closes sockets beyond it as they are accepted (the 'drop' event).
 * - handshakes in progress: a TLS handshake is the expensive part of a connection (an ECDSA signature and
 *   a certificate chain check); a socket accepted while too many are under way, in all or from its source,
 *   is closed before its ClientHello is answered. Clients see a reset and retry with their backoff.
 * - open connections per source: whatever the handshake state, so that one host cannot hold the process's
 *   connection budget either.
 * - a deadline per socket, from the TCP connection to an admitted session. Node's `handshakeTimeout` is not
 *   enough: it is an idle timer that each byte resets, and on Node 20 it reports a socket that never sent a
 *   ClientHello through 'tlsClientError' without closing it, so that socket held its handshake slot forever.
 * - CONNECT rate: a token bucket over every session admitted; the refusal is CONNACK 3 "server
 *   unavailable", which MQTT clients treat as "retry later" (unlike 5, after which mqtt.js stops).
 * Every slot is released in the raw socket's 'close', the one event every path ends in.
 */
export function createConnectionAdmission(server: Server, options: ConnectionAdmissionOptions): ConnectionAdmission {
  const now = options.now ?? (() => performance.now());
  const connects = new TokenBucket(options.connectPerSecond, options.connectPerSecond * 2, now());
  const tracked = new Map<Socket, Tracked>();
  const sources = new Map<string, { handshakes: number; connections: number }>();
  /** Raw sockets this module closed and reported: the 'tlsClientError' that follows is not another refusal. */
  const reported = new WeakSet<Socket>();
  let pending = 0;
  let closing = false;

  const report = (socket: Socket, code: ConnectionRefusal, remote: string | undefined, detail: Record<string, unknown>) => {
    if (reported.has(socket)) return;
    reported.add(socket);
    options.onRefused(code, remote, detail);
  };
  const refuse = (socket: Socket, code: ConnectionRefusal, detail: Record<string, unknown>) => {
    report(socket, code, socket.remoteAddress, detail);
    socket.destroy();
  };
  const handshakeOver = (entry: Tracked) => {
    if (!entry.handshaking) return;
    entry.handshaking = false;
    pending--;
    const counts = sources.get(entry.source);
    if (counts) counts.handshakes--;
  };
  const release = (socket: Socket) => {
    const entry = tracked.get(socket);
    if (entry === undefined) return;
    tracked.delete(socket);
    clearTimeout(entry.deadline);
    handshakeOver(entry);
    const counts = sources.get(entry.source);
    if (counts && --counts.connections <= 0) sources.delete(entry.source);
  };
  const expire = (socket: Socket) => {
    const entry = tracked.get(socket);
    if (entry === undefined) return;
    refuse(socket, 'MQTT_CONNECT_TIMEOUT', { stage: entry.handshaking ? 'tls' : 'mqtt', connectTimeoutMs: options.connectTimeoutMs });
    entry.tls?.destroy();
  };
  // One listener for every raw socket, `this` being the socket: no closure or `once` wrapper per connection.
  function releaseOnClose(this: Socket): void {
    release(this);
  }
  // Node keeps the raw socket a TLSSocket wraps in `_parent` (lib/_tls_wrap.js); it has no public accessor.
  const rawOf = (tls: TLSSocket) => (tls as TLSSocket & { readonly _parent?: Socket })._parent;
  // net.Socket keeps what `remoteAddress` / `remotePort` / `remoteFamily` read in `_peername`, filled by the
  // first of them from the handle's getpeername (lib/net.js `_getpeername`); the 'connection' listener below
  // filled the raw socket's. The TLS socket's handle forwards getpeername to the raw one (lib/_tls_wrap.js
  // `methodProxy`): the same connection, the same answer.
  type WithPeername = Socket & { _peername?: { address?: string; family?: string; port?: number } };

  server.maxConnections = options.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => options.onRefused('MQTT_CONNECTION_LIMIT', data?.remoteAddress, { max: options.maxConnections }));
  // tls.Server wraps the socket in its own 'connection' listener, registered before this one.
  server.on('connection', (socket: Socket) => {
    const source = sourceOf(socket.remoteAddress);
    if (closing || source === undefined) {
      // Already reset by the peer (no address left), or the broker is shutting down.
      socket.destroy();
      return;
    }
    const counts = sources.get(source) ?? { handshakes: 0, connections: 0 };
    if (pending >= options.maxPendingHandshakes) return refuse(socket, 'MQTT_HANDSHAKE_LIMIT', { max: options.maxPendingHandshakes });
    if (counts.handshakes >= options.maxPendingHandshakesPerSource) return refuse(socket, 'MQTT_SOURCE_LIMIT', { source, limit: 'handshakes', max: options.maxPendingHandshakesPerSource });
    if (counts.connections >= options.maxConnectionsPerSource) return refuse(socket, 'MQTT_SOURCE_LIMIT', { source, limit: 'connections', max: options.maxConnectionsPerSource });
    sources.set(source, counts);
    counts.handshakes++;
    counts.connections++;
    pending++;
    const entry: Tracked = { source, handshaking: true };
    tracked.set(socket, entry);
    entry.deadline = setTimeout(expire, options.connectTimeoutMs, socket);
    // 'close' is emitted once per socket, and `release` forgets the socket on the first call anyway.
    socket.on('close', releaseOnClose);
  });
  server.on('secureConnection', (tls: TLSSocket) => {
    const raw = rawOf(tls);
    const entry = raw && tracked.get(raw);
    if (!entry) return;
    handshakeOver(entry);
    entry.tls = tls;
  });
  server.on('tlsClientError', (error: Error & { code?: string }, tls: TLSSocket) => {
    const raw = rawOf(tls);
    const remote = tls.remoteAddress ?? raw?.remoteAddress;
    // Whatever went wrong, this socket will never be a session: close it (Node 20 leaves it open after a
    // handshake timeout).
    tls.destroy();
    raw?.destroy();
    if (raw === undefined || (error.code !== undefined && peerLeft.has(error.code))) return;
    if (error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') report(raw, 'MQTT_CONNECT_TIMEOUT', remote, { stage: 'tls', connectTimeoutMs: options.connectTimeoutMs });
    else report(raw, 'TLS_HANDSHAKE_FAILED', remote, { reason: error.message.slice(0, 200), ...(error.code !== undefined ? { error: error.code } : {}) });
  });

  return {
    admitConnect(remote) {
      if (connects.tryTake(1, now())) return true;
      options.onRefused('MQTT_CONNECT_RATE_LIMITED', remote, { perSecond: options.connectPerSecond });
      return false;
    },
    sessionAdmitted(conn) {
      const raw = rawOf(conn);
      const entry = raw && tracked.get(raw);
      if (!entry) return;
      clearTimeout(entry.deadline);
      entry.deadline = undefined;
    },
    shareRemoteAddress(tls) {
      const raw = rawOf(tls) as WithPeername | undefined;
      const peername = raw?._peername;
      if (peername?.address !== undefined && (tls as WithPeername)._peername === undefined) (tls as WithPeername)._peername = peername;
    },
    pendingHandshakes: () => pending,
    close() {
      closing = true;
      for (const [socket, entry] of tracked) {
        clearTimeout(entry.deadline);
        if (entry.deadline === undefined) continue; // a session: aedes closes it
        reported.add(socket);
        entry.tls?.destroy();
        socket.destroy();
      }
    },
  };
}
