import type { MqttClient } from 'mqtt';
import { type CertificateReply, createCsr, enrollTopics, generateKeyPair, privateKeyToPem, renewTopics, rootsToTrust, rotateTopic, trustBundleTopic, x509 } from '../core/index.ts';
import { type BackoffPolicy, defaultBackoff, fullJitterDelayMs } from './backoff.ts';
import { closeMqtt, connectMqtt, type MqttCredential, type MqttTarget, type ReplyReceived, requestCertificate } from './mqtt-connection.ts';
import { maxTimerDelayMs, renewalDelayMs } from './renewal-schedule.ts';
import { SimError } from './sim-error.ts';

/** Whatever core's generateKeyPair makes (WebCrypto types live in core's DOM lib, not in this project's). */
export type DeviceKeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

export type DeviceStage = 'enroll' | 'connect' | 'renew';
export type DeviceState = 'idle' | 'enrolling' | 'connecting' | 'online' | 'renewing' | 'stopped' | 'failed';

/** What a device reports as it lives; a fleet aggregates these into its summary. */
export type DeviceEvent =
  | { readonly type: 'connected'; readonly credential: 'claim' | 'device'; readonly latencyMs: number }
  | { readonly type: 'enrolled'; readonly latencyMs: number }
  | { readonly type: 'online' }
  | { readonly type: 'telemetry' }
  | { readonly type: 'renewed'; readonly latencyMs: number }
  /** The gateway asked for a renewal now (a rotation campaign, on `$fleetgate/certs/{id}/rotate`). */
  | { readonly type: 'rotate'; readonly campaignId: string | undefined }
  /** A trust bundle changed the roots the device verifies the gateway with (README "The trust bundle"). */
  | { readonly type: 'trust-updated'; readonly roots: number }
  | { readonly type: 'renewal-failed'; readonly code: string; readonly message: string }
  | { readonly type: 'retry'; readonly stage: DeviceStage; readonly code: string; readonly delayMs: number }
  | { readonly type: 'failed'; readonly stage: DeviceStage; readonly code: string; readonly message: string };

export interface SimulatedDeviceOptions {
  /** The device serial: MQTT client id of the claim session, and the device id it is enrolled under. */
  readonly serial: string;
  readonly target: MqttTarget;
  /** The factory claim credential (shared by a batch). */
  readonly claim: MqttCredential;
  /** Telemetry period; 0 publishes nothing. */
  readonly telemetryIntervalMs: number;
  readonly connectTimeoutMs?: number;
  readonly replyTimeoutMs?: number;
  readonly backoff?: BackoffPolicy;
  readonly renewal?: {
    /** Renew when this fraction of the certificate lifetime is left (default 1/3, on the gateway's clock). */
    readonly fractionLeft?: number;
    /** Renew this long after each new certificate instead (tests and renewal load). */
    readonly afterMs?: number;
  };
  /**
   * A device enrolled before (its key and the certificate reply, e.g. another life's `credential`): it
   * skips enrollment and connects with them, as a device coming back after power-off would.
   */
  readonly enrolled?: DeviceCredential;
  /** A key pair made in advance, so a benchmark does not time key generation. */
  readonly keyPair?: DeviceKeyPair;
  /** Benchmarks: end the device's life once it is enrolled, or once its first device session is up. */
  readonly stopAfter?: 'enrolled' | 'online';
  readonly random?: () => number;
  readonly onEvent?: (event: DeviceEvent) => void;
}

export interface DeviceOutcome {
  readonly serial: string;
  readonly state: 'stopped' | 'failed';
  readonly enrolled: boolean;
  readonly online: boolean;
  readonly failure?: { readonly stage: DeviceStage; readonly code: string; readonly message: string };
  /** Serial number of the certificate the device held last. */
  readonly certificateSerial?: string;
}

/** A device's private key (PEM) and the certificate reply it holds. */
export interface DeviceCredential {
  readonly key: string;
  readonly reply: CertificateReply;
}

interface HeldCertificate {
  readonly key: string;
  readonly reply: CertificateReply;
  readonly receivedAt: Date;
  readonly notBefore: Date;
}

type Wake = 'stop' | 'closed' | 'renew';

const defaults = { connectTimeoutMs: 10_000, replyTimeoutMs: 15_000 };

/**
 * A device that lives the whole life over the wire: claim session → CSR → certificate → device session →
 * telemetry → renewal before expiry → session with the new certificate. Failures a later attempt can cure
 * (timeouts, silent closes, rate limits) are retried with full-jitter backoff; the rest end the device with
 * the gateway's code.
 */
export class SimulatedDevice {
  readonly serial: string;
  readonly #options: SimulatedDeviceOptions;
  readonly #backoff: BackoffPolicy;
  readonly #random: () => number;
  readonly #abort = new AbortController();
  #state: DeviceState = 'idle';
  #client: MqttClient | undefined;
  #held: HeldCertificate | undefined;
  #enrolled = false;
  #online = false;
  #running: Promise<DeviceOutcome> | undefined;
  #telemetryTimer: NodeJS.Timeout | undefined;
  #renewalTimer: NodeJS.Timeout | undefined;
  #telemetrySeq = 0;
  /** The roots this device verifies the gateway with: the target's at first, then as trust bundles change them. */
  #trustedRoots: string;
  readonly #wakes = new Set<Wake>();
  #waiter: (() => void) | undefined;
  #renewWaiters: { resolve: (reply: CertificateReply) => void; reject: (error: Error) => void }[] = [];
  #enrollmentPhaseDone!: () => void;
  /** Settles when the device is online with its own certificate, or its life ended before that. */
  readonly enrollmentPhase: Promise<void> = new Promise((resolve) => (this.#enrollmentPhaseDone = resolve));

  constructor(options: SimulatedDeviceOptions) {
    this.serial = options.serial;
    this.#options = options;
    this.#backoff = options.backoff ?? defaultBackoff;
    this.#random = options.random ?? Math.random;
    this.#trustedRoots = options.target.ca;
  }

  /** The roots (PEM) the device trusts now. */
  get trustedRoots(): string {
    return this.#trustedRoots;
  }

  get state(): DeviceState {
    return this.#state;
  }

  /** The reply that delivered the certificate in use. */
  get certificate(): CertificateReply | undefined {
    return this.#held?.reply;
  }

  /** The key and certificate in use, for a later life of the same device (`enrolled`). */
  get credential(): DeviceCredential | undefined {
    return this.#held === undefined ? undefined : { key: this.#held.key, reply: this.#held.reply };
  }

  /** Runs the device until `stop()` or a final failure. Calling it again returns the same life. */
  run(): Promise<DeviceOutcome> {
    this.#running ??= this.#live();
    return this.#running;
  }

  /** Ends the life: pending waits are cut short, the session is closed with DISCONNECT. */
  async stop(): Promise<DeviceOutcome | undefined> {
    this.#abort.abort();
    this.#wake('stop');
    return this.#running;
  }

  /**
   * Renews at once instead of waiting for the schedule; resolves once the device is connected with the new
   * certificate (the gateway retires the old one at that moment).
   */
  renewNow(): Promise<CertificateReply> {
    if (this.#state !== 'online' && this.#state !== 'renewing') return Promise.reject(new Error(`device ${this.serial} is ${this.#state}, not online`));
    return new Promise((resolve, reject) => {
      this.#renewWaiters.push({ resolve, reject });
      this.#wake('renew');
    });
  }

  async #live(): Promise<DeviceOutcome> {
    let stage: DeviceStage = 'enroll';
    try {
      this.#state = 'enrolling';
      const before = this.#options.enrolled;
      if (before !== undefined) {
        this.#hold(before.key, { reply: before.reply, latencyMs: 0, receivedAt: new Date() });
      } else {
        const keys = this.#options.keyPair ?? (await generateKeyPair());
        const csr = await createCsr(keys, this.serial);
        const enrolled = await this.#withRetries('enroll', () => this.#enrollOnce(csr));
        this.#hold(await privateKeyToPem(keys.privateKey), enrolled);
      }
      this.#enrolled = true;
      if (this.#options.stopAfter === 'enrolled') return this.#outcome('stopped');

      stage = 'connect';
      this.#state = 'connecting';
      await this.#connectDevice();
      this.#online = true;
      this.#emit({ type: 'online' });
      this.#enrollmentPhaseDone();
      if (this.#options.stopAfter === 'online') return this.#outcome('stopped');

      this.#state = 'online';
      this.#startTelemetry();
      this.#scheduleRenewal();
      for (;;) {
        const wakes = await this.#nextWakes();
        if (wakes.has('stop')) return this.#outcome('stopped');
        if (wakes.has('closed') && !this.#client?.connected) {
          // Kicked, or the network dropped: come back with backoff, as a device would.
          this.#stopTelemetry();
          this.#state = 'connecting';
          await this.#connectDevice();
          this.#state = 'online';
          this.#startTelemetry();
        }
        if (wakes.has('renew')) {
          stage = 'renew';
          await this.#renew();
          stage = 'connect';
        }
      }
    } catch (error) {
      const simError = error instanceof SimError ? error : new SimError('SIM_UNEXPECTED', error instanceof Error ? error.message : String(error), { cause: error });
      if (simError.code === 'STOPPED' || this.#abort.signal.aborted) return this.#outcome('stopped');
      this.#emit({ type: 'failed', stage, code: simError.code, message: simError.message });
      return this.#outcome('failed', { stage, code: simError.code, message: simError.message });
    } finally {
      this.#stopTelemetry();
      clearTimeout(this.#renewalTimer);
      for (const waiter of this.#renewWaiters.splice(0)) waiter.reject(new SimError('STOPPED'));
      const client = this.#client;
      this.#client = undefined;
      if (client !== undefined) await closeMqtt(client);
      this.#enrollmentPhaseDone();
    }
  }

  async #enrollOnce(csr: string): Promise<ReplyReceived> {
    const client = await this.#connect(this.#options.claim, 'claim');
    try {
      const received = await requestCertificate(client, enrollTopics(this.serial), { csr }, { timeoutMs: this.#replyTimeout, signal: this.#abort.signal });
      this.#emit({ type: 'enrolled', latencyMs: received.latencyMs });
      return received;
    } finally {
      await closeMqtt(client);
    }
  }

  /** Opens the device session with the certificate held now, retrying what a retry can cure. */
  async #connectDevice(): Promise<void> {
    const held = this.#required();
    const client = await this.#withRetries('connect', () => this.#connect({ key: held.key, cert: held.reply.certificate + held.reply.chain }, 'device'));
    this.#client = client;
    client.once('close', () => {
      if (this.#client === client) this.#wake('closed');
    });
    this.#listenForRotation(client, held.reply.deviceId);
    this.#listenForTrustBundle(client);
  }

  /**
   * The retained trust bundle (README "The trust bundle"): the device keeps a new root only when the bundle
   * cross-signs it with a root it already trusts (core rootsToTrust), and connects with those roots from then
   * on, so it still verifies the gateway after the old root is retired.
   */
  #listenForTrustBundle(client: MqttClient): void {
    client.on('message', (received, payload) => {
      if (received !== trustBundleTopic || this.#client !== client) return;
      rootsToTrust([this.#trustedRoots], payload.toString('utf8'), new Date()).then(
        (roots) => {
          const next = roots.join('');
          if (next === this.#trustedRoots) return;
          this.#trustedRoots = next;
          this.#emit({ type: 'trust-updated', roots: roots.length });
        },
        () => undefined, // an unreadable bundle changes nothing
      );
    });
    client.subscribe(trustBundleTopic, { qos: 1 }, (error) => {
      if (error) this.#emit({ type: 'retry', stage: 'connect', code: 'SUBSCRIBE_REFUSED', delayMs: 0 });
    });
  }

  /**
   * A rotation campaign's command (README "Rotation campaigns"): renew now, as the schedule would. The
   * subscription is made on every new session (clean sessions keep none); the gateway sends a command that
   * waited while the device was offline as soon as this subscription arrives.
   */
  #listenForRotation(client: MqttClient, deviceId: string): void {
    const topic = rotateTopic(deviceId);
    client.on('message', (received, payload) => {
      if (received !== topic || this.#client !== client) return;
      let campaignId: string | undefined;
      try {
        const command = JSON.parse(payload.toString('utf8')) as { campaignId?: unknown };
        campaignId = typeof command.campaignId === 'string' ? command.campaignId : undefined;
      } catch {
        campaignId = undefined; // a command without a readable body still means "renew now"
      }
      this.#emit({ type: 'rotate', campaignId });
      if (this.#state !== 'renewing') this.#wake('renew');
    });
    client.subscribe(topic, { qos: 1 }, (error) => {
      if (error) this.#emit({ type: 'retry', stage: 'connect', code: 'SUBSCRIBE_REFUSED', delayMs: 0 });
    });
  }

  async #connect(credential: MqttCredential, kind: 'claim' | 'device'): Promise<MqttClient> {
    const { client, latencyMs } = await connectMqtt({ ...this.#options.target, ca: this.#trustedRoots }, this.serial, credential, {
      timeoutMs: this.#options.connectTimeoutMs ?? defaults.connectTimeoutMs,
      signal: this.#abort.signal,
      sharedCredential: kind === 'claim',
    });
    this.#emit({ type: 'connected', credential: kind, latencyMs });
    return client;
  }

  async #renew(): Promise<void> {
    this.#state = 'renewing';
    clearTimeout(this.#renewalTimer);
    const held = this.#required();
    let renewed: ReplyReceived;
    let key: string;
    try {
      // A fresh key pair each time: renewal is also key rotation.
      const keys = await generateKeyPair();
      key = await privateKeyToPem(keys.privateKey);
      const csr = await createCsr(keys, held.reply.deviceId);
      renewed = await this.#withRetries('renew', async () => {
        if (!this.#client?.connected) await this.#connectDevice();
        return requestCertificate(this.#client as MqttClient, renewTopics(held.reply.deviceId), { csr }, { timeoutMs: this.#replyTimeout, signal: this.#abort.signal });
      });
    } catch (error) {
      if (error instanceof SimError && error.code === 'STOPPED') throw error;
      // The old certificate stays valid until it expires: keep using it and try again later.
      const simError = error instanceof SimError ? error : new SimError('SIM_UNEXPECTED', String(error));
      this.#emit({ type: 'renewal-failed', code: simError.code, message: simError.message });
      for (const waiter of this.#renewWaiters.splice(0)) waiter.reject(simError);
      this.#state = 'online';
      this.#armRenewal(fullJitterDelayMs(this.#backoff.maxAttempts, this.#backoff, this.#random));
      if (!this.#client?.connected) this.#wake('closed');
      return;
    }

    // Switch over: the gateway retires the old certificate when the new one first connects.
    this.#stopTelemetry();
    const old = this.#client;
    this.#client = undefined;
    if (old !== undefined) await closeMqtt(old);
    this.#hold(key, renewed);
    this.#state = 'connecting';
    await this.#connectDevice();
    this.#emit({ type: 'renewed', latencyMs: renewed.latencyMs });
    for (const waiter of this.#renewWaiters.splice(0)) waiter.resolve(renewed.reply);
    this.#state = 'online';
    this.#startTelemetry();
    this.#scheduleRenewal();
  }

  #hold(key: string, received: ReplyReceived): void {
    this.#held = { key, reply: received.reply, receivedAt: received.receivedAt, notBefore: new x509.X509Certificate(received.reply.certificate).notBefore };
  }

  #scheduleRenewal(): void {
    const held = this.#required();
    const afterMs = this.#options.renewal?.afterMs;
    const delay =
      afterMs ??
      renewalDelayMs(
        {
          notBefore: held.notBefore,
          notAfter: new Date(held.reply.notAfter),
          serverTime: new Date(held.reply.serverTime),
          receivedAt: held.receivedAt,
          ...(this.#options.renewal?.fractionLeft === undefined ? {} : { fractionLeft: this.#options.renewal.fractionLeft }),
        },
        new Date(),
      );
    this.#armRenewal(delay);
  }

  #armRenewal(delayMs: number): void {
    clearTimeout(this.#renewalTimer);
    if (delayMs > maxTimerDelayMs) {
      this.#renewalTimer = setTimeout(() => this.#armRenewal(delayMs - maxTimerDelayMs), maxTimerDelayMs);
    } else {
      this.#renewalTimer = setTimeout(() => this.#wake('renew'), delayMs);
    }
  }

  #startTelemetry(): void {
    const interval = this.#options.telemetryIntervalMs;
    const client = this.#client;
    const deviceId = this.#held?.reply.deviceId;
    if (!(interval > 0) || client === undefined || deviceId === undefined) return;
    const topic = `devices/${deviceId}/telemetry`;
    const tick = () => {
      if (client.connected) {
        const payload = JSON.stringify({ seq: ++this.#telemetrySeq, at: new Date().toISOString(), temperature: Math.round((18 + this.#random() * 8) * 10) / 10 });
        client.publish(topic, payload, { qos: 1 }, (error) => {
          if (!error) this.#emit({ type: 'telemetry' });
        });
      }
      this.#telemetryTimer = setTimeout(tick, interval);
    };
    // The first message at a random point of the period: devices that came online together stay spread out.
    this.#telemetryTimer = setTimeout(tick, Math.floor(this.#random() * interval));
  }

  #stopTelemetry(): void {
    clearTimeout(this.#telemetryTimer);
    this.#telemetryTimer = undefined;
  }

  async #withRetries<T>(stage: DeviceStage, attempt: () => Promise<T>): Promise<T> {
    for (let tries = 0; ; tries++) {
      if (this.#abort.signal.aborted) throw new SimError('STOPPED');
      try {
        return await attempt();
      } catch (error) {
        const simError = error instanceof SimError ? error : new SimError('SIM_UNEXPECTED', error instanceof Error ? error.message : String(error), { cause: error });
        if (!simError.retryable || tries + 1 >= this.#backoff.maxAttempts || this.#abort.signal.aborted) throw simError;
        const delayMs = fullJitterDelayMs(tries, this.#backoff, this.#random);
        this.#emit({ type: 'retry', stage, code: simError.code, delayMs });
        await sleep(delayMs, this.#abort.signal);
      }
    }
  }

  #wake(reason: Wake): void {
    this.#wakes.add(reason);
    this.#waiter?.();
  }

  async #nextWakes(): Promise<Set<Wake>> {
    if (this.#wakes.size === 0) await new Promise<void>((resolve) => (this.#waiter = resolve));
    this.#waiter = undefined;
    const wakes = new Set(this.#wakes);
    this.#wakes.clear();
    return wakes;
  }

  get #replyTimeout(): number {
    return this.#options.replyTimeoutMs ?? defaults.replyTimeoutMs;
  }

  #required(): HeldCertificate {
    if (this.#held === undefined) throw new SimError('SIM_UNEXPECTED', 'no certificate held');
    return this.#held;
  }

  #emit(event: DeviceEvent): void {
    this.#options.onEvent?.(event);
  }

  #outcome(state: 'stopped' | 'failed', failure?: DeviceOutcome['failure']): DeviceOutcome {
    this.#state = state;
    return {
      serial: this.serial,
      state,
      enrolled: this.#enrolled,
      online: this.#online,
      ...(failure === undefined ? {} : { failure }),
      ...(this.#held === undefined ? {} : { certificateSerial: this.#held.reply.serial }),
    };
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (the caller checks the signal). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
