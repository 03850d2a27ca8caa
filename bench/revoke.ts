/**
 * Revocation-to-disconnect benchmark: N devices connected over mTLS to a real `fleetgate serve` child
 * process, then revoked one at a time through the admin API. For each, two latencies:
 *
 *   end-to-end   API request sent → the device's MQTT client sees its connection closed
 *   server       registry commit → session closed (the gateway's own histogram, from /metrics)
 *
 * Run: node --import tsx bench/revoke.ts [--devices 1000] [--quick]
 * bench/run.ts (the side-by-side suite) imports measureRevocation for its `revoke_to_disconnect_p99_ms`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { apiRequest, type ApiClientOptions, closeApiClient } from '../cli/api-client.ts';
import { createCsr, generateKeyPair, privateKeyToPem } from '../core/index.ts';
import { startGatewayProcess } from './gateway-process.ts';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

async function inBatches<T>(items: T[], size: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: size }, async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index] as T, index);
    }
  }));
}

export interface RevocationFigures {
  readonly devices: number;
  readonly endToEndMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly serverMs: { readonly p50UpperBound: number; readonly p99UpperBound: number; readonly mean: number; readonly observations: number };
  readonly refusedReconnects: string;
}

/**
 * Enrolls `devices` devices through a claim over HTTPS, connects them all, revokes them one at a time through
 * the admin API and times each revocation until its MQTT client sees the close.
 */
export async function measureRevocation(options: { apiUrl: string; mqttUrl: string; ca: string; token: string; devices: number; prefix?: string; log?: (line: string) => void }): Promise<RevocationFigures> {
  const { ca, devices } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const prefix = options.prefix ?? 'rv-';
  const admin: ApiClientOptions = { baseUrl: options.apiUrl.replace('//localhost', '//127.0.0.1'), ca, token: options.token, keepAlive: true };
  const claim = await apiRequest<{ certificate: string; privateKey: string }>(admin, 'POST', '/v1/claims', { template: 'default' });
  const claimClient: ApiClientOptions = { baseUrl: admin.baseUrl, ca, cert: claim.body.certificate, key: claim.body.privateKey };

  log(`enrolling ${devices} devices over HTTPS…`);
  const credentials: { id: string; key: string; cert: string }[] = [];
  await inBatches(Array.from({ length: devices }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`), 20, async (id) => {
    const keys = await generateKeyPair();
    const reply = await apiRequest<{ certificate: string; chain: string }>(claimClient, 'POST', '/v1/enroll', { csr: await createCsr(keys, id) });
    if (reply.status !== 201) throw new Error(`enrollment of ${id} failed: ${reply.status} ${JSON.stringify(reply.body)}`);
    credentials.push({ id, key: await privateKeyToPem(keys.privateKey), cert: reply.body.certificate + reply.body.chain });
  });

  log(`connecting ${devices} devices…`);
  const port = Number(new URL(options.mqttUrl.replace('mqtts:', 'https:')).port);
  const clients = new Map<string, MqttClient>();
  await inBatches(credentials, 50, async ({ id, key, cert }) => {
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { clientId: id, key, cert, ca, protocolVersion: 4, reconnectPeriod: 0, keepalive: 300 }, false);
    clients.set(id, client);
  });

  log(`revoking ${devices} devices one at a time…`);
  const endToEnd: number[] = [];
  let refusedReconnects = 0;
  for (const [id, client] of clients) {
    const closed = new Promise<number>((resolve) => client.once('close', () => resolve(performance.now())));
    const started = performance.now();
    const response = await apiRequest(admin, 'POST', `/v1/devices/${id}/revoke`, { reason: 'keyCompromise' });
    if (response.status !== 200) throw new Error(`revoke ${id}: ${response.status} ${JSON.stringify(response.body)}`);
    endToEnd.push((await closed) - started);
  }
  // A sample of reconnects must be refused: a revoked device never gets back in.
  for (const { id, key, cert } of credentials.slice(0, 20)) {
    await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { clientId: id, key, cert, ca, protocolVersion: 4, reconnectPeriod: 0 }, false).then(
      (client) => client.end(true),
      () => refusedReconnects++,
    );
  }

  const metricsText = (await apiRequest<string>(admin, 'GET', '/metrics')).body;
  const buckets = [...metricsText.matchAll(/fleetgate_revocation_to_disconnect_seconds_bucket\{le="([^"]+)"\} (\d+)/g)].map((m) => ({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), count: Number(m[2]) }));
  const total = buckets.at(-1)?.count ?? 0;
  const serverQuantile = (q: number) => (buckets.find((b) => b.count >= q * total)?.le ?? NaN) * 1000;
  const sum = Number(/fleetgate_revocation_to_disconnect_seconds_sum (\S+)/.exec(metricsText)?.[1] ?? NaN);

  endToEnd.sort((a, b) => a - b);
  const figures: RevocationFigures = {
    devices,
    endToEndMs: { p50: +percentile(endToEnd, 50).toFixed(2), p99: +percentile(endToEnd, 99).toFixed(2), max: +(endToEnd.at(-1) ?? NaN).toFixed(2) },
    serverMs: { p50UpperBound: serverQuantile(0.5), p99UpperBound: serverQuantile(0.99), mean: +((sum / total) * 1000).toFixed(3), observations: total },
    refusedReconnects: `${refusedReconnects}/20`,
  };
  for (const client of clients.values()) client.end(true);
  closeApiClient(admin);
  return figures;
}

/** The command-line benchmark: its own `fleetgate serve`, then a summary and a JSON file. */
async function main(): Promise<void> {
  const { values: flags } = parseArgs({ options: { devices: { type: 'string' }, quick: { type: 'boolean', default: false }, out: { type: 'string' } } });
  const devices = Number(flags.devices ?? (flags.quick ? 200 : 1000));
  const out = flags.out ?? join(import.meta.dirname, flags.quick ? 'results-revoke.quick.json' : 'results-revoke.json');
  const dataDir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-revoke-'));
  const gateway = await startGatewayProcess({ dataDir, env: { FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000000', FLEETGATE_API_RATE_LIMIT_PER_MINUTE: '1000000' } });
  try {
    const ca = readFileSync(join(dataDir, 'pki', 'ca.crt'), 'utf8');
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    const figures = await measureRevocation({ apiUrl: gateway.apiUrl, mqttUrl: gateway.mqttUrl, ca, token, devices });
    const result = {
      benchmark: 'revoke',
      date: new Date().toISOString(),
      command: `node --import tsx bench/revoke.ts --devices ${devices}`,
      machine: { cpus: cpus().length, model: cpus()[0]?.model.split(' ').slice(0, 2).join(' '), node: process.version },
      conditions: `${devices} devices connected over mTLS (ECDSA P-256) to one fleetgate serve process (SQLite), revoked sequentially via POST /v1/devices/{id}/revoke from the same machine`,
      ...figures,
    };
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(
      [
        `revocation → disconnect, ${devices} connected devices`,
        `  end to end (API call → client sees close): p50 ${result.endToEndMs.p50} ms   p99 ${result.endToEndMs.p99} ms   max ${result.endToEndMs.max} ms`,
        `  in the gateway (commit → close):           mean ${result.serverMs.mean} ms   p50 ≤ ${result.serverMs.p50UpperBound} ms   p99 ≤ ${result.serverMs.p99UpperBound} ms (histogram buckets)`,
        `  reconnects after revocation refused: ${result.refusedReconnects}`,
        `  written to ${out}`,
      ].join('\n') + '\n',
    );
  } finally {
    await gateway.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (resolve(process.argv[1] ?? '') === import.meta.filename) await main();
