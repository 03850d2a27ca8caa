import type { Client } from 'aedes';
import type { X509Certificate } from 'node:crypto';
import type { PeerCredential } from '../core/index.ts';
import type { SessionContext } from './session-admission.ts';

/**
 * What a connection's TLS handshake proved, read once by the listener (broker/mqtt-listener.ts): the
 * credential, and the client certificate a relay forwards with an enrollment or renewal (by the time aedes
 * runs the `published` hook, a client that sent its request and left has a closed socket that no longer
 * answers getPeerX509Certificate()). The certificate object shares OpenSSL's copy; its DER is only made
 * when a request is relayed.
 */
export interface VerifiedPeer {
  readonly credential: PeerCredential;
  readonly certificate: X509Certificate | undefined;
}

interface ConnectionRecord {
  readonly peer: VerifiedPeer;
  /** The will topic the CONNECT asked for: admission checks it, and so does every later policy change. */
  willTopic?: string;
  /** The client id a claim session asked for (its serial); aedes knows it under `claimClientId(serial)`. */
  claimSerial?: string;
  /** Set once admitted; replaced when a policy or template change recompiles it. */
  session?: SessionContext;
  /** Counted as open in the metrics (a session kicked while registering never was). */
  counted: boolean;
}

const noPeer: VerifiedPeer = { credential: { kind: 'refused', code: 'AUTH_NO_CLIENT_CERT', reason: 'no TLS session' }, certificate: undefined };

/** How long a kick is remembered, to catch a session admitted just before it and registered just after. */
const kickMemoryMs = 5 * 60_000;

/**
 * The id aedes knows a claim session by. Device ids cannot contain "/" or start with "$" (core/device-id.ts),
 * so no device or service session can ever share it.
 */
export const claimClientId = (serial: string) => `$claim/${serial}`;

/**
 * Everything the gateway knows about each connection and session, in one place: the verified peer (given
 * by the TLS listener, or directly by a test), what CONNECT asked for, the admitted `SessionContext`, and
 * the kicks of the last minutes by client id. The aedes hooks (broker/session-hooks.ts) and the live
 * updates (broker/live-session-updates.ts) read and write it; nothing here touches aedes.
 */
export class SessionTable {
  readonly #connections = new WeakMap<Client, ConnectionRecord>();
  readonly #kickedAt = new Map<string, number>();

  /**
   * A new connection, right after `aedes.handle()`, with what its TLS handshake proved. False when a hook
   * already saw this client without a verified peer: it must be closed, never vouched for after the fact.
   */
  open(client: Client, peer: VerifiedPeer): boolean {
    if (this.#connections.has(client)) return false;
    this.#connections.set(client, { peer, counted: false });
    return true;
  }

  #record(client: Client): ConnectionRecord {
    let record = this.#connections.get(client);
    if (record === undefined) {
      // A connection nobody vouched for (not from the TLS listener): it proves nothing.
      record = { peer: noPeer, counted: false };
      this.#connections.set(client, record);
    }
    return record;
  }

  credentialOf(client: Client): PeerCredential {
    return (this.#connections.get(client)?.peer ?? noPeer).credential;
  }

  certificateOf(client: Client): X509Certificate | undefined {
    return this.#connections.get(client)?.peer.certificate;
  }

  /** preConnect: what the CONNECT asked for. A claim session's serial is kept, since aedes gets `claimClientId(serial)`. */
  connecting(client: Client, request: { readonly willTopic: string | undefined; readonly claimSerial: string | undefined }): void {
    const record = this.#record(client);
    if (request.willTopic !== undefined) record.willTopic = request.willTopic;
    if (request.claimSerial !== undefined) record.claimSerial = request.claimSerial;
  }

  willTopicOf(client: Client): string | undefined {
    return this.#connections.get(client)?.willTopic;
  }

  claimSerialOf(client: Client): string | undefined {
    return this.#connections.get(client)?.claimSerial;
  }

  /** The session admitted (or recompiled) for this client. */
  setSession(client: Client, session: SessionContext): void {
    this.#record(client).session = session;
  }

  sessionOf(client: Client): SessionContext | undefined {
    return this.#connections.get(client)?.session;
  }

  /** The id of a device or service session, for audit entries; undefined for claims and unadmitted peers. */
  deviceIdOf(client: Client): string | undefined {
    return this.sessionOf(client)?.identity.kind === 'device' ? client.id : undefined;
  }

  /** The audit actor: `device:<id>`, `claim:<serial>`, or `anonymous@<address>` before admission. */
  actorOf(client: Client): string {
    const session = this.sessionOf(client);
    if (session === undefined) return `anonymous@${remoteOf(client) ?? '?'}`;
    return session.identity.kind === 'claim' ? `claim:${session.clientId}` : `device:${session.clientId}`;
  }

  /** The session now counts as open in the metrics. */
  markCounted(client: Client): void {
    this.#record(client).counted = true;
  }

  /** True (once) if the session counted as open. */
  uncount(client: Client): boolean {
    const record = this.#connections.get(client);
    if (record?.counted !== true) return false;
    record.counted = false;
    return true;
  }

  /** The gateway closed (or is about to close) this client id at `at` (ms since the epoch). */
  kicked(clientId: string, at: number): void {
    this.#kickedAt.set(clientId, at);
    for (const [id, when] of this.#kickedAt) if (when < at - kickMemoryMs) this.#kickedAt.delete(id);
  }

  /** Whether this client id was kicked at or after `since`: a session admitted before the kick must not stay. */
  kickedSince(clientId: string, since: number): boolean {
    const at = this.#kickedAt.get(clientId);
    return at !== undefined && at >= since;
  }
}

/** The peer's address (a TLS socket's; undefined on an in-memory stream). */
export function remoteOf(client: Client): string | undefined {
  return (client.conn as { remoteAddress?: string }).remoteAddress;
}
