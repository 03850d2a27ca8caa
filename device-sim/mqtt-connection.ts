import { createSecureContext, type SecureContext } from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { CertificateReply } from '../core/index.ts';
import { connectErrorToSimError, SimError } from './sim-error.ts';

/** PEM client certificate (leaf first, then its chain) and private key. */
export interface MqttCredential {
  readonly cert: string;
  readonly key: string;
}

export interface MqttTarget {
  /** mqtts://host:port */
  readonly url: string;
  /** PEM root CA the gateway's server certificate chains to. */
  readonly ca: string;
}

export interface Connected {
  readonly client: MqttClient;
  /** TCP + TLS handshake + CONNECT → CONNACK. */
  readonly latencyMs: number;
}

/**
 * One TLS context per credential object: a fleet shares its claim credential, and building an OpenSSL
 * context (parse the CA, certificate and key) for each of thousands of connections would make the load
 * generator, not the gateway, the bottleneck. Device certificates are per device and built each time.
 */
const contexts = new WeakMap<MqttCredential, { ca: string; context: SecureContext }>();

function secureContextFor(credential: MqttCredential, ca: string, shared: boolean): SecureContext {
  const cached = shared ? contexts.get(credential) : undefined;
  if (cached !== undefined && cached.ca === ca) return cached.context;
  const context = createSecureContext({ ca, cert: credential.cert, key: credential.key, minVersion: 'TLSv1.2' });
  if (shared) contexts.set(credential, { ca, context });
  return context;
}

/**
 * Connects once: MQTT 3.1.1 (aedes 1.2 refuses v5 with CONNACK 1), no automatic reconnect (mqtt.js retries
 * at a fixed interval with no jitter; the device schedules its own retries), and every outcome settles the
 * promise — CONNACK, an error, a close without CONNACK (a refused TLS 1.3 client certificate produces only
 * `close`), the timeout or `signal`. mqtt.connectAsync(opts) can hang on a silent close, hence this.
 */
export function connectMqtt(
  target: MqttTarget,
  clientId: string,
  credential: MqttCredential,
  options: { timeoutMs: number; signal?: AbortSignal; sharedCredential?: boolean },
): Promise<Connected> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(new SimError('STOPPED'));
    const started = performance.now();
    let secureContext: SecureContext;
    try {
      secureContext = secureContextFor(credential, target.ca, options.sharedCredential ?? false);
    } catch (error) {
      // A key that does not match its certificate, or PEM OpenSSL cannot read: no retry will fix it.
      return reject(new SimError('TLS_ERROR', `cannot load the client credential: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
    }
    const clientOptions: IClientOptions & { secureContext: SecureContext } = {
      clientId,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: options.timeoutMs,
      resubscribe: false,
      queueQoSZero: false,
      rejectUnauthorized: true,
      secureContext,
    };
    const client = mqtt.connect(target.url, clientOptions);
    // mqtt.js emits 'error' for late protocol errors too; an EventEmitter without a listener would throw.
    client.on('error', () => {});
    let settled = false;
    const finish = (error?: SimError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      client.off('connect', onConnect);
      client.off('error', onError);
      client.off('close', onClose);
      if (error === undefined) return resolve({ client, latencyMs: performance.now() - started });
      client.end(true);
      reject(error);
    };
    const onConnect = () => finish();
    const onError = (error: Error) => finish(connectErrorToSimError(error));
    const onClose = () => finish(new SimError('CONNECTION_CLOSED'));
    const onAbort = () => finish(new SimError('STOPPED'));
    const timer = setTimeout(() => finish(new SimError('CONNECT_TIMEOUT')), options.timeoutMs + 1000);
    client.once('connect', onConnect);
    client.on('error', onError);
    client.once('close', onClose);
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface ReplyReceived {
  readonly reply: CertificateReply;
  /** Request PUBLISH handed to the socket → `accepted` reply received. */
  readonly latencyMs: number;
  /** Local clock at receipt, to compare with the reply's serverTime. */
  readonly receivedAt: Date;
}

/**
 * The request/reply exchange the README prescribes for enrollment and renewal: subscribe to both reply topics
 * (QoS 1) before publishing the request, so the reply cannot be published before anyone listens. An
 * `accepted` reply resolves; a `rejected` one rejects with the gateway's code.
 */
export function requestCertificate(
  client: MqttClient,
  topics: { readonly request: string; readonly accepted: string; readonly rejected: string },
  body: { csr: string },
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<ReplyReceived> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(new SimError('STOPPED'));
    let settled = false;
    let published = 0;
    const finish = (outcome: { error: SimError } | { value: ReplyReceived }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.off('message', onMessage);
      client.off('close', onClose);
      options.signal?.removeEventListener('abort', onAbort);
      if ('error' in outcome) reject(outcome.error);
      else resolve(outcome.value);
    };
    const onMessage = (topic: string, payload: Buffer) => {
      if (topic !== topics.accepted && topic !== topics.rejected) return;
      const latencyMs = performance.now() - published;
      const receivedAt = new Date();
      let parsed: unknown;
      try {
        parsed = JSON.parse(payload.toString('utf8'));
      } catch {
        return finish({ error: new SimError('REPLY_INVALID', `${topic}: not JSON`) });
      }
      if (topic === topics.rejected) {
        const rejection = parsed as { code?: unknown; message?: unknown };
        const code = typeof rejection.code === 'string' ? rejection.code : 'REPLY_INVALID';
        return finish({ error: new SimError(code, typeof rejection.message === 'string' ? rejection.message : undefined) });
      }
      const reply = asCertificateReply(parsed);
      if (reply === undefined) return finish({ error: new SimError('REPLY_INVALID', `${topic}: missing deviceId, certificate, chain, notAfter or serverTime`) });
      finish({ value: { reply, latencyMs, receivedAt } });
    };
    const onClose = () => finish({ error: new SimError('SESSION_CLOSED') });
    const onAbort = () => finish({ error: new SimError('STOPPED') });
    const timer = setTimeout(() => finish({ error: new SimError('REPLY_TIMEOUT') }), options.timeoutMs);
    client.on('message', onMessage);
    client.once('close', onClose);
    options.signal?.addEventListener('abort', onAbort, { once: true });

    client.subscribe([topics.accepted, topics.rejected], { qos: 1 }, (error, granted) => {
      if (settled) return;
      // mqtt.js reports SUBACK 0x80 as an error whose code is the return code; other errors mean the session went away.
      if (error || granted?.some((grant) => grant.qos === 0x80)) {
        const refused = error === null || error === undefined || typeof (error as { code?: unknown }).code === 'number';
        return finish({ error: new SimError(refused ? 'SUBSCRIBE_REFUSED' : 'SESSION_CLOSED', error?.message) });
      }
      published = performance.now();
      client.publish(topics.request, JSON.stringify(body), { qos: 1 }, (publishError) => {
        if (publishError) finish({ error: new SimError('SESSION_CLOSED', publishError.message) });
      });
    });
  });
}

function asCertificateReply(value: unknown): CertificateReply | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  const fields = ['deviceId', 'serial', 'certificate', 'chain', 'notAfter', 'serverTime'] as const;
  if (!fields.every((field) => typeof record[field] === 'string')) return undefined;
  if (Number.isNaN(Date.parse(record.notAfter as string)) || Number.isNaN(Date.parse(record.serverTime as string))) return undefined;
  return record as unknown as CertificateReply;
}

/** Graceful DISCONNECT when the session is up, bounded so a dead socket cannot hold the device. */
export async function closeMqtt(client: MqttClient, timeoutMs = 2000): Promise<void> {
  if (!client.connected) {
    client.end(true);
    return;
  }
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      client.end(true);
      resolve();
    }, timeoutMs);
    client.end(false, {}, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
