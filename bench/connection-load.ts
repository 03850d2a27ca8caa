import { connect as tlsConnect, createSecureContext } from 'node:tls';
import { closeMqtt, connectMqtt, createLatencyRecorder, type LatencySummary, type MqttCredential } from '../device-sim/index.ts';

/**
 * The first two layers of an enrollment, alone, so the gateway's cost per layer can be measured:
 * a TLS handshake with the claim certificate (no MQTT), then TLS + MQTT CONNECT/CONNACK (session admission:
 * certificate → identity, registry lookup) + DISCONNECT.
 */
export interface LoadResult {
  readonly ok: number;
  readonly failed: number;
  readonly latencyMs: LatencySummary;
  readonly elapsedMs: number;
}

async function bounded(count: number, concurrency: number, task: (index: number) => Promise<number>): Promise<LoadResult> {
  const latency = createLatencyRecorder();
  let next = 0;
  let failed = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      const index = next++;
      try {
        latency.record(await task(index));
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const summary = latency.summary();
  return { ok: summary.count, failed, latencyMs: summary, elapsedMs: Math.round(performance.now() - started) };
}

export function runTlsHandshakes(options: { url: string; ca: string; credential: MqttCredential; count: number; concurrency: number }): Promise<LoadResult> {
  const { hostname, port } = new URL(options.url);
  const secureContext = createSecureContext({ ca: options.ca, cert: options.credential.cert, key: options.credential.key });
  return bounded(
    options.count,
    options.concurrency,
    (_index) =>
      new Promise<number>((resolve, reject) => {
        const started = performance.now();
        const socket = tlsConnect({ host: hostname, port: Number(port), secureContext, rejectUnauthorized: true });
        const timer = setTimeout(() => socket.destroy(new Error('handshake timeout')), 10_000);
        socket.once('secureConnect', () => {
          const ms = performance.now() - started;
          clearTimeout(timer);
          socket.end();
          socket.once('close', () => resolve(ms));
        });
        socket.once('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
      }),
  );
}

export function runMqttConnects(options: { url: string; ca: string; credential: MqttCredential; count: number; concurrency: number; serialPrefix: string }): Promise<LoadResult> {
  return bounded(options.count, options.concurrency, async (index) => {
    const { client, latencyMs } = await connectMqtt({ url: options.url, ca: options.ca }, `${options.serialPrefix}${index + 1}`, options.credential, { timeoutMs: 10_000, sharedCredential: true });
    await closeMqtt(client);
    return latencyMs;
  });
}
