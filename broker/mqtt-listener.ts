import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { createPeerClassifier, type GatewayMetrics, snapshotSecureContext, type TrustSource } from '../core/index.ts';
import { type ConnectionAdmission, type ConnectionAdmissionOptions, createConnectionAdmission } from './connection-admission.ts';
import type { VerifiedPeer } from './session-table.ts';

export interface MqttListenerConfig {
  /** The server certificate and key, and every CA certificate a client chain may need (root + issuers). */
  /** From the TCP connection to an admitted session; also the TLS handshake timeout. */
  readonly connectTimeoutMs: number;
  /** Connection and handshake budgets (broker/connection-admission.ts). */
  readonly budgets: Pick<ConnectionAdmissionOptions, 'maxConnections' | 'maxPendingHandshakes' | 'maxPendingHandshakesPerSource' | 'maxConnectionsPerSource' | 'connectPerSecond'>;
}

export interface MqttListenerDeps {
  /** The process's trusted CAs (core/trust-store.ts): new handshakes follow every change. */
  readonly trust: TrustSource;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  /** Every connection refused by a budget, once per socket (the caller counts and audits it, sampled). */
  readonly onRefused: ConnectionAdmissionOptions['onRefused'];
  /** A finished handshake, with what it proved: hand the socket to the broker. */
  readonly onConnection: (socket: TLSSocket, peer: VerifiedPeer) => void;
}

export interface MqttListener {
  /** Budgets and the CONNECT rate, which the broker also consults (authenticate, session registered). */
  readonly connections: ConnectionAdmission;
  /** Starts listening; resolves with the port (0 picks a free one). */
  listen(port: number, host: string): Promise<number>;
  /** Stops accepting, closes connections that are not sessions yet; resolves once the server is closed (after the broker closed its sessions). */
  close(): Promise<void>;
}

/**
 * The MQTT side's TLS listener: mutual TLS with `core/tls-profile.ts`'s options and the trust store's CAs,
 * connection budgets in front of it, and one reading per connection of who the peer is (`classifyPeer`,
 * core/peer-identity.ts, remembered per certificate by core/peer-classifier.ts). Aedes never sees a socket
 * that did not finish a handshake; MQTT starts in `onConnection`.
 */
export function createMqttListener(config: MqttListenerConfig, deps: MqttListenerDeps): MqttListener {
  const { metrics, log, trust } = deps;
  // Reconnecting devices are recognised by fingerprint instead of classified anew (core/peer-classifier.ts);
  // a new trust snapshot comes with new issuers, which empty it.
  const peers = createPeerClassifier({ parse: (der) => new X509Certificate(der) });

  const server: Server = createServer(
    {
      ...snapshotSecureContext(trust.current()),
      requestCert: true,
      // Verify, but let the handshake finish: refusals are sent as CONNACK so devices can see them.
      rejectUnauthorized: false,
      handshakeTimeout: config.connectTimeoutMs,
      // MQTT's small packets (CONNACK after the TLS 1.3 session tickets, PUBACK, SUBACK) must not wait for
      // the peer's delayed ACK under Nagle's algorithm.
      noDelay: true,
    },
    (socket) => {
      metrics.tlsHandshake('ok');
      connections.shareRemoteAddress(socket);
      deps.onConnection(socket, peers.classify(socket, trust.current().issuers));
    },
  );
  const connections = createConnectionAdmission(server, { ...config.budgets, connectTimeoutMs: config.connectTimeoutMs, onRefused: deps.onRefused });
  server.on('tlsClientError', (error, socket) => {
    metrics.tlsHandshake('failed');
    log.debug({ err: error.message, remote: socket.remoteAddress }, 'TLS handshake failed');
  });
  // New handshakes use the new CA list at once; established sessions are not affected.
  const unfollowTrust = trust.subscribe((snapshot) => {
    server.setSecureContext(snapshotSecureContext(snapshot));
    log.info({ version: snapshot.version, manufacturerCas: snapshot.anchors.manufacturer.length }, 'trusted CAs reloaded');
  });

  let closed: Promise<unknown> | undefined;
  return {
    connections,
    async listen(port, host) {
      server.listen(port, host);
      await once(server, 'listening');
      return (server.address() as AddressInfo).port;
    },
    close() {
      closed ??= (() => {
        unfollowTrust();
        const done = once(server, 'close');
        server.close();
        connections.close();
        return done;
      })();
      return closed.then(() => undefined);
    },
  };
}
