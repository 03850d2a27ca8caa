import { createSecureContext, type SecureContext } from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRequest } from '../../cli/api-client.ts';
import { counterValue, type FloodIdentities, prepareIdentities } from '../helpers/flood-fixture.ts';
import { startServeProcess, type ServeProcess } from '../helpers/fleetgate-process.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * A gateway restart brings the whole fleet back at once. Admission limits turn that storm into retries:
 * sockets beyond the handshake cap are closed before their handshake, CONNECTs beyond the admission rate get
 * CONNACK 3 (server unavailable); devices back off with jitter and all get in, none refused for good.
 */
const fleetSize = 2000;
const dir = makeTempDir();
let ids: FloodIdentities;
let gateway: ServeProcess;

beforeAll(async () => {
  ids = await prepareIdentities(dir.path, { claim: true });
  // Limits well below the storm, so that both kinds of shedding happen here. The whole fleet connects from
  // 127.0.0.1: the per-source handshake limit is raised to the global one, which is what is tested here.
  gateway = await startServeProcess(dir.path, { FLEETGATE_CONNECT_RATE: '200', FLEETGATE_MAX_PENDING_HANDSHAKES: '128', FLEETGATE_MAX_PENDING_HANDSHAKES_PER_SOURCE: '128' });
}, 60_000);
afterAll(async () => {
  await gateway?.stop();
  dir.remove();
});

interface Outcome {
  client: MqttClient | undefined;
  attempts: number;
  connackCodes: number[];
}

/** One device: connect, and on any failure back off (exponential, full jitter) and try again. */
async function device(serial: string, secureContext: SecureContext, deadline: number): Promise<Outcome> {
  const outcome: Outcome = { client: undefined, attempts: 0, connackCodes: [] };
  let backoffMs = 250;
  while (Date.now() < deadline) {
    outcome.attempts++;
    try {
      outcome.client = await mqtt.connectAsync(
        `mqtts://127.0.0.1:${gateway.mqttPort}`,
        // mqtt.js hands unknown options through to tls.connect.
        { clientId: serial, protocolVersion: 4, secureContext, servername: 'localhost', rejectUnauthorized: true, reconnectPeriod: 0, connectTimeout: 20_000, keepalive: 0 } as IClientOptions,
        false,
      );
      return outcome;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'number') outcome.connackCodes.push(code);
      // CONNACK 2/4/5 would be a refusal for good: a real device would stop here.
      if (typeof code === 'number' && code !== 3) return outcome;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.random() * backoffMs));
    backoffMs = Math.min(backoffMs * 2, 4000);
  }
  return outcome;
}

describe('a reconnect storm', () => {
  it(`ends with all ${fleetSize} devices connected and none refused for good`, async () => {
    const deadline = Date.now() + 45_000;
    // One TLS context for the whole simulated fleet: the test process plays 2000 devices on one thread.
    const secureContext = createSecureContext({ ca: ids.ca, key: ids.claim!.key, cert: ids.claim!.cert });
    const outcomes = await Promise.all(Array.from({ length: fleetSize }, (_, index) => device(`storm-${index + 1}`, secureContext, deadline)));
    try {
      const connected = outcomes.filter((outcome) => outcome.client?.connected).length;
      const codes = outcomes.flatMap((outcome) => outcome.connackCodes);
      expect(codes.filter((code) => code !== 3)).toEqual([]);
      expect(connected).toBe(fleetSize);

      const text = (await apiRequest<string>({ baseUrl: `https://127.0.0.1:${gateway.apiPort}`, ca: ids.ca, token: ids.adminToken }, 'GET', '/metrics')).body as unknown as string;
      expect(counterValue(text, 'fleetgate_mqtt_sessions', 'kind="claim"')).toBe(fleetSize);
      const shed = counterValue(text, 'fleetgate_mqtt_connect_refusals_total', 'code="MQTT_CONNECT_RATE_LIMITED"') + counterValue(text, 'fleetgate_mqtt_connection_refusals_total');
      expect(shed).toBeGreaterThan(0);
    } finally {
      await Promise.all(outcomes.map((outcome) => outcome.client?.endAsync(true)));
    }
  }, 60_000);
});
