import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { fullJitterDelayMs, type BackoffPolicy, summarizeLatencies, type LatencySummary } from '../device-sim/index.ts';
import type { BenchIdentity } from './device-credentials.ts';
import { createFrameReader, decodePublish, disconnect, encodeConnect, encodePuback, encodePublish, encodeSubscribe, type MqttFrame } from './mqtt-wire.ts';

/**
 * The load generator's client side, identical for both brokers: raw MQTT 3.1.1 frames (mqtt-wire.ts) on
 * node:tls sockets with per-device certificates. Everything here runs in a load worker process (load-worker.ts).
 */
export interface Target {
  readonly host: string;
  readonly port: number;
  readonly ca: string;
}

export interface Session {
  readonly socket: TLSSocket;
  /** Frames after CONNACK. */
  onFrame(handler: (frame: MqttFrame) => void): void;
  readonly resumed: boolean;
}

export class ConnectRefused extends Error {
  constructor(readonly returnCode: number) {
    super(`CONNACK return code ${returnCode}`);
  }
}

const contexts = new Map<string, SecureContext>();

/** One OpenSSL context per identity, built once: parsing PEM per connection would load the loader, not the broker. */
export function contextFor(identity: BenchIdentity, ca: string): SecureContext {
  let context = contexts.get(identity.id);
  if (context === undefined) {
    context = createSecureContext({ ca, cert: identity.cert, key: identity.key, minVersion: 'TLSv1.2' });
    contexts.set(identity.id, context);
  }
  return context;
}

/**
 * TLS handshake + CONNECT → CONNACK. `ticket` resumes a saved TLS session; `onTicket` receives the tickets the
 * server issues (TLS 1.3 sends them after the handshake, before the CONNACK). Settles on CONNACK, a refusal,
 * an error, a close or the timeout.
 */
export function connectSession(target: Target, identity: BenchIdentity, options: { timeoutMs: number; keepaliveSeconds?: number; ticket?: Buffer; onTicket?: (ticket: Buffer) => void }): Promise<Session> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: target.host, port: target.port, secureContext: contextFor(identity, target.ca), ...(options.ticket ? { session: options.ticket } : {}) });
    if (options.onTicket) socket.on('session', options.onTicket);
    let handler: ((frame: MqttFrame) => void) | undefined;
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error('connect timeout')), options.timeoutMs);
    socket.setNoDelay(true);
    socket.on('error', (error) => fail(error));
    socket.once('close', () => fail(new Error('closed before CONNACK')));
    socket.once('secureConnect', () => socket.write(encodeConnect(identity.id, options.keepaliveSeconds ?? 600)));
    socket.on(
      'data',
      createFrameReader((frame) => {
        if (settled) return handler?.(frame);
        if (frame.type !== 2) return fail(new Error(`expected CONNACK, got packet type ${frame.type}`));
        const returnCode = frame.body[1] ?? 255;
        if (returnCode !== 0) return fail(new ConnectRefused(returnCode));
        settled = true;
        clearTimeout(timer);
        resolve({ socket, resumed: socket.isSessionReused(), onFrame: (h) => (handler = h) });
      }),
    );
  });
}

export function closeSession(session: Session): void {
  session.socket.end(disconnect);
}

function cpuSecondsSince(before: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6;
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight. */
async function bounded(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

export interface ConnectRateResult {
  readonly ok: number;
  readonly failed: number;
  readonly elapsedMs: number;
  readonly perSecond: number;
  /** Connections whose TLS session was resumed, of those that tried to resume (resumed mode). */
  readonly resumed: number;
  readonly latencyMs: LatencySummary;
  readonly errors: Record<string, number>;
  /** This process's CPU seconds during the timed part (set-up excluded). */
  readonly loaderCpuSeconds: number;
}

/**
 * New connections per second: each one a TLS handshake (full, or resumed from a ticket saved by an earlier
 * connection of the same device) + CONNECT/CONNACK, then DISCONNECT. Devices are used round-robin.
 */
export async function measureConnectRate(target: Target, devices: readonly BenchIdentity[], options: { count: number; concurrency: number; resume: boolean }): Promise<ConnectRateResult> {
  const tickets = new Map<string, Buffer>();
  const saveTicket = (id: string) => (ticket: Buffer) => tickets.set(id, ticket);
  for (const device of devices) contextFor(device, target.ca);
  if (options.resume) {
    // Not timed: one full handshake per device to obtain its session ticket.
    await bounded(devices.length, options.concurrency, async (i) => {
      const device = devices[i] as BenchIdentity;
      await connectSession(target, device, { timeoutMs: 15_000, onTicket: saveTicket(device.id) }).then(closeSession, () => {});
    });
  }
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let resumed = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await bounded(options.count, options.concurrency, async (i) => {
    const device = devices[i % devices.length] as BenchIdentity;
    const begin = performance.now();
    try {
      const ticket = options.resume ? tickets.get(device.id) : undefined;
      const session = await connectSession(target, device, { timeoutMs: 15_000, ...(ticket ? { ticket } : {}), ...(options.resume ? { onTicket: saveTicket(device.id) } : {}) });
      latencies.push(performance.now() - begin);
      if (session.resumed) resumed++;
      closeSession(session);
    } catch (error) {
      const key = error instanceof Error ? error.message.slice(0, 60) : 'error';
      errors[key] = (errors[key] ?? 0) + 1;
    }
  });
  const elapsedMs = performance.now() - started;
  return {
    ok: latencies.length,
    failed: options.count - latencies.length,
    elapsedMs,
    perSecond: (latencies.length * 1000) / elapsedMs,
    resumed,
    latencyMs: summarizeLatencies(latencies),
    errors,
    loaderCpuSeconds: cpuSecondsSince(cpuBefore),
  };
}

/** The subscriber of the throughput and latency scenarios: SUBSCRIBE, SUBACK checked, PUBACK for QoS 1. */
async function subscribe(target: Target, service: BenchIdentity, filter: string, qos: 0 | 1, onMessage: (payload: Buffer) => void): Promise<Session> {
  const session = await connectSession(target, service, { timeoutMs: 15_000 });
  await new Promise<void>((resolve, reject) => {
    session.onFrame((frame) => {
      if (frame.type === 9) {
        const granted = frame.body[2];
        if (granted === 0x80) reject(new Error(`SUBSCRIBE ${filter} refused`));
        else resolve();
        return;
      }
      if (frame.type !== 3) return;
      const message = decodePublish(frame);
      if (message.packetId !== undefined) session.socket.write(encodePuback(message.packetId));
      onMessage(message.payload);
    });
    session.socket.write(encodeSubscribe(1, filter, qos));
  });
  return session;
}

async function connectAll(target: Target, devices: readonly BenchIdentity[], concurrency: number): Promise<Session[]> {
  // Indexed, not pushed: session i must publish on device i's topic, or the ACL (rightly) refuses it.
  const sessions: Session[] = new Array<Session>(devices.length);
  await bounded(devices.length, concurrency, async (i) => void (sessions[i] = await connectSession(target, devices[i] as BenchIdentity, { timeoutMs: 15_000 })));
  return sessions;
}

export interface ThroughputResult {
  readonly sent: number;
  readonly delivered: number;
  readonly windowMs: number;
  readonly perSecond: number;
  readonly loaderCpuSeconds: number;
}

/**
 * Many publishers (each on its own `devices/<id>/telemetry`) → one wildcard subscriber (`devices/+/telemetry`),
 * as fast as the broker takes them: QoS 0 with socket back-pressure, QoS 1 with `inflight` unacknowledged
 * PUBLISHes per publisher. The figure is messages delivered to the subscriber per second in a steady-state
 * window (after a ramp-up). Kernel socket buffers can hold hundreds of thousands of small QoS 0 messages, so
 * "sent" says little; the window never waits for a backlog to drain, and every socket is destroyed at the end.
 */
export async function measureThroughput(target: Target, publishers: readonly BenchIdentity[], service: BenchIdentity, options: { qos: 0 | 1; durationMs: number; payloadBytes: number; inflight: number }): Promise<ThroughputResult> {
  let delivered = 0;
  const subscriber = await subscribe(target, service, 'devices/+/telemetry', options.qos, () => void delivered++);
  const sessions = await connectAll(target, publishers, 20);
  const payload = Buffer.alloc(options.payloadBytes, 0x61);
  let sent = 0;
  let stopped = false;
  for (const [index, session] of sessions.entries()) {
    const topic = `devices/${publishers[index]?.id}/telemetry`;
    if (options.qos === 0) {
      const frame = encodePublish(topic, payload);
      const pump = () => {
        // Write until the socket buffers, then wait for 'drain'; yield every batch so the subscriber is read.
        for (let i = 0; i < 64 && !stopped; i++) {
          sent++;
          if (!session.socket.write(frame)) return void session.socket.once('drain', pump);
        }
        if (!stopped) setImmediate(pump);
      };
      pump();
      continue;
    }
    let nextId = 1;
    let outstanding = 0;
    const send = () => {
      while (!stopped && outstanding < options.inflight) {
        outstanding++;
        sent++;
        session.socket.write(encodePublish(topic, payload, nextId));
        nextId = nextId === 65535 ? 1 : nextId + 1;
      }
    };
    session.onFrame((frame) => {
      if (frame.type !== 4) return;
      outstanding--;
      send();
    });
    send();
  }
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const rampMs = Math.min(500, options.durationMs / 4);
  await sleep(rampMs);
  const windowStart = { at: performance.now(), delivered, sent, cpu: process.cpuUsage() };
  await sleep(options.durationMs - rampMs);
  const windowMs = performance.now() - windowStart.at;
  const inWindow = delivered - windowStart.delivered;
  const sentInWindow = sent - windowStart.sent;
  const loaderCpuSeconds = cpuSecondsSince(windowStart.cpu);
  stopped = true;
  for (const session of [...sessions, subscriber]) session.socket.destroy();
  return { sent: sentInWindow, delivered: inWindow, windowMs, perSecond: (inWindow * 1000) / windowMs, loaderCpuSeconds };
}

export interface LatencyResult {
  readonly sent: number;
  readonly delivered: number;
  readonly ratePerSecond: number;
  /** p999 too (the C generator's results have it; summarizeLatencies stops at p99). */
  readonly latencyMs: LatencySummary & { readonly p999?: number };
  readonly loaderCpuSeconds: number;
  readonly windowMs: number;
}

/**
 * End-to-end latency at a fixed total rate, publisher → broker → wildcard subscriber, in one process so both
 * ends read the same clock: the send time (performance.now()) travels in the first 8 bytes of the payload.
 */
export async function measureLatency(target: Target, publishers: readonly BenchIdentity[], service: BenchIdentity, options: { qos: 0 | 1; ratePerSecond: number; durationMs: number; payloadBytes: number }): Promise<LatencyResult> {
  const samples: number[] = [];
  let warmedUpAt = Infinity;
  let warmUpDelivered = 0;
  const subscriber = await subscribe(target, service, 'devices/+/telemetry', options.qos, (payload) => {
    const sentAt = payload.readDoubleLE(0);
    // The first half second is not recorded: new sessions, cold caches (and JIT, after a broker restart).
    if (sentAt >= warmedUpAt) samples.push(performance.now() - sentAt);
    else warmUpDelivered++;
  });
  const sessions = await connectAll(target, publishers, 20);
  const topics = publishers.map((p) => `devices/${p.id}/telemetry`);
  let sent = 0;
  let nextId = 1;
  const tickMs = 5;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  warmedUpAt = started + Math.min(500, options.durationMs / 4);
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - started;
      if (elapsed >= options.durationMs) return resolve();
      // Catch up to the schedule (timers drift), round-robin over the publishers.
      const due = Math.floor((elapsed / 1000) * options.ratePerSecond);
      while (sent < due) {
        const index = sent % sessions.length;
        const payload = Buffer.alloc(Math.max(8, options.payloadBytes), 0x61);
        payload.writeDoubleLE(performance.now(), 0);
        sessions[index]?.socket.write(encodePublish(topics[index] as string, payload, options.qos === 1 ? nextId : undefined));
        nextId = nextId === 65535 ? 1 : nextId + 1;
        sent++;
      }
      setTimeout(tick, tickMs);
    };
    tick();
  });
  const deadline = performance.now() + 5_000;
  while (samples.length + warmUpDelivered < sent && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  const loaderCpuSeconds = cpuSecondsSince(cpuBefore);
  const windowMs = performance.now() - started;
  for (const session of [...sessions, subscriber]) closeSession(session);
  const sorted = [...samples].sort((a, b) => a - b);
  const p999 = sorted.length === 0 ? 0 : Math.round((sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.999) - 1)] ?? 0) * 100) / 100;
  return { sent, delivered: samples.length + warmUpDelivered, ratePerSecond: options.ratePerSecond, latencyMs: { ...summarizeLatencies(samples), p999 }, loaderCpuSeconds, windowMs };
}

/**
 * Idle devices: connected once and kept (RSS per idle connection), then — armed — reconnecting on their own
 * with the same full-jitter backoff when the broker drops them (the reconnect storm).
 */
export interface IdleFleet {
  readonly connected: number;
  readonly failed: number;
  /** From now on a dropped device retries with `policy`; `whenSettled` resolves once every device is back or has given up. */
  arm(policy: BackoffPolicy): void;
  whenSettled(timeoutMs: number): Promise<{ back: number; failed: number; lastBackAt: number; firstDropAt: number; refusals: Record<string, number> }>;
  close(): void;
}

export async function holdIdle(target: Target, devices: readonly BenchIdentity[], concurrency: number): Promise<IdleFleet> {
  const live = new Map<string, Session>();
  let failed = 0;
  await bounded(devices.length, concurrency, async (i) => {
    const device = devices[i] as BenchIdentity;
    try {
      live.set(device.id, await connectSession(target, device, { timeoutMs: 30_000 }));
    } catch {
      failed++;
    }
  });
  let armed: BackoffPolicy | undefined;
  let closing = false;
  let pending = 0;
  let back = 0;
  let gaveUp = 0;
  let lastBackAt = 0;
  let firstDropAt = 0;
  const refusals: Record<string, number> = {};
  const held = live.size;
  let settle: (() => void) | undefined;
  const checkSettled = () => {
    if (back + gaveUp >= held) settle?.();
  };
  const watch = (device: BenchIdentity, session: Session) => {
    session.socket.once('close', () => {
      if (closing || armed === undefined) return;
      if (firstDropAt === 0) firstDropAt = Date.now();
      pending++;
      void reconnect(device, armed);
    });
  };
  const reconnect = async (device: BenchIdentity, policy: BackoffPolicy) => {
    for (let attempt = 0; attempt < policy.maxAttempts; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, fullJitterDelayMs(attempt, policy)));
      try {
        const session = await connectSession(target, device, { timeoutMs: 15_000 });
        live.set(device.id, session);
        back++;
        lastBackAt = Date.now();
        pending--;
        watch(device, session);
        return checkSettled();
      } catch (error) {
        const key = error instanceof ConnectRefused ? `CONNACK ${error.returnCode}` : error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message.slice(0, 40)) : 'error';
        refusals[key] = (refusals[key] ?? 0) + 1;
      }
    }
    gaveUp++;
    pending--;
    checkSettled();
  };
  for (const device of devices) {
    const session = live.get(device.id);
    if (session) watch(device, session);
  }
  return {
    connected: held,
    failed,
    arm: (policy) => void (armed = policy),
    whenSettled: (timeoutMs) =>
      new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          resolve({ back, failed: gaveUp + pending, lastBackAt, firstDropAt, refusals });
        };
        const timer = setTimeout(done, timeoutMs);
        settle = done;
        checkSettled();
      }),
    close() {
      closing = true;
      for (const session of live.values()) session.socket.destroy();
    },
  };
}
