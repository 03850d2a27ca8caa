import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * Standard MQTT 3.1.1 behaviour under the gateway's ACLs, driven by clients nobody on the team wrote:
 * Debian's paho-mqtt (Python, /usr/bin/python3 — the pyenv python3 on PATH has no paho) and the mosquitto
 * clients, over mutual TLS with device certificates. The paho side lives in test/interop/paho/*.py and
 * prints JSON lines; a backend service (mqtt.js, policy `backend`) watches what the gateway delivers.
 */
const python = '/usr/bin/python3';
const scripts = resolve(import.meta.dirname, 'paho');
const hasPaho = spawnSync(python, ['-c', 'import paho.mqtt.client'], { stdio: 'ignore' }).status === 0;
if (!hasPaho) console.warn(`paho interop tests skipped: "${python} -c 'import paho.mqtt'" failed (Debian: apt-get install python3-paho-mqtt)`);

let gw: TestGateway;
let backend: MqttClient;
const dir = makeTempDir('fleetgate-paho-');

beforeAll(async () => {
  gw = await startTestGateway();
  backend = await gw.connect('backend-paho', await gw.createDevice('backend-paho', { policy: 'backend' }));
  await backend.subscribeAsync('devices/#', { qos: 2 });
});
afterAll(async () => {
  await backend?.endAsync();
  await gw?.close();
  dir.remove();
});

/** A registered device with device.crt (+ chain), device.key and ca.crt in its own directory. */
async function device(id: string): Promise<string> {
  const credential = await gw.createDevice(id);
  const path = join(dir.path, id);
  mkdirSync(path);
  writeFileSync(join(path, 'device.crt'), credential.cert);
  writeFileSync(join(path, 'device.key'), credential.key, { mode: 0o600 });
  writeFileSync(join(path, 'ca.crt'), gw.ca);
  return path;
}

interface Line {
  event: string;
  [field: string]: unknown;
}

function paho(script: string, id: string, path: string, args: string[] = []): Promise<{ code: number; lines: Line[]; stderr: string }> {
  return new Promise((done) => {
    execFile(python, [join(scripts, script), '--port', String(gw.mqttPort), '--dir', path, '--id', id, ...args], { timeout: 30_000, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      const lines = stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Line);
      done({ code, lines, stderr });
    });
  });
}

const mosquittoTls = (id: string, path: string) => ['-h', 'localhost', '-p', String(gw.mqttPort), '-V', 'mqttv311', '-i', id, '--cafile', join(path, 'ca.crt'), '--cert', join(path, 'device.crt'), '--key', join(path, 'device.key')];

function mosquitto(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(command, args, { timeout: 15_000 }, (error, stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }));
  });
}

/** Publishes from the backend every 200 ms until `until` settles: a subscriber in another process is in by then. */
async function repeatUntil<T>(until: Promise<T>, topic: string, payload: string, qos: 0 | 1 | 2): Promise<T> {
  const timer = setInterval(() => backend.publish(topic, payload, { qos }), 200);
  try {
    return await until;
  } finally {
    clearInterval(timer);
  }
}

describe('mosquitto clients', () => {
  it('QoS 2 both ways: mosquitto_pub to the backend, backend to mosquitto_sub', async () => {
    const path = await device('mq-q2');
    const received = nextMessage(backend, 'devices/mq-q2/data', 10_000);
    const pub = await mosquitto('mosquitto_pub', [...mosquittoTls('mq-q2', path), '-t', 'devices/mq-q2/data', '-m', 'exactly-once', '-q', '2']);
    expect(pub.code, pub.stderr).toBe(0);
    expect(await received).toBe('exactly-once');

    const sub = spawn('mosquitto_sub', [...mosquittoTls('mq-q2', path), '-t', 'devices/mq-q2/commands/#', '-q', '2', '-C', '1', '-W', '15', '-v']);
    let output = '';
    sub.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await repeatUntil(once(sub, 'exit'), 'devices/mq-q2/commands/go', 'q2-down', 2)) as [number];
    expect(code).toBe(0);
    expect(output.trim()).toBe('devices/mq-q2/commands/go q2-down');
  });

  it('publishes the will of a mosquitto_sub killed with SIGKILL', async () => {
    const path = await device('mq-will');
    const sub = spawn('mosquitto_sub', [...mosquittoTls('mq-will', path), '-t', 'devices/mq-will/commands/#', '--will-topic', 'devices/mq-will/status', '--will-payload', 'mosquitto-died', '--will-qos', '1'], { stdio: 'ignore' });
    // The session is registered (and its will armed) once the gateway has audited the connection.
    await gw.waitForAudit({ action: 'mqtt.connect', result: 'ok' }, (e) => e.deviceId === 'mq-will');
    const will = nextMessage(backend, 'devices/mq-will/status', 10_000);
    sub.kill('SIGKILL');
    expect(await will).toBe('mosquitto-died');
  });
});

describe.skipIf(!hasPaho)('paho-mqtt (Debian python3-paho-mqtt)', () => {
  it('QoS 0, 1 and 2 round trips on the device topics', async () => {
    const path = await device('paho-qos');
    const run = await paho('roundtrip.py', 'paho-qos', path);
    expect(run.code, run.stderr).toBe(0);
    expect(run.lines).toContainEqual({ event: 'connack', rc: 0, session_present: false, client: 'paho-qos' });
    expect(run.lines).toContainEqual({ event: 'suback', granted: [2] });
    for (const qos of [0, 1, 2]) {
      expect(run.lines).toContainEqual({ event: 'published', qos, completed: true });
      expect(run.lines).toContainEqual({ event: 'message', topic: `devices/paho-qos/echo/q${qos}`, payload: `payload-q${qos}`, qos, retain: false });
    }
  });

  it('delivers a retained message (published by mosquitto_pub) to a later paho subscriber', async () => {
    const path = await device('paho-ret');
    const pub = await mosquitto('mosquitto_pub', [...mosquittoTls('paho-ret', path), '-t', 'devices/paho-ret/status', '-m', 'kept', '-r', '-q', '1']);
    expect(pub.code, pub.stderr).toBe(0);
    const run = await paho('subscribe.py', 'paho-ret', path, ['--filter', 'devices/paho-ret/#', '--wait', '10']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.lines).toContainEqual({ event: 'message', topic: 'devices/paho-ret/status', payload: 'kept', qos: 1, retain: true });
  });

  it('publishes the last will when the client dies without DISCONNECT, and not after a clean DISCONNECT', async () => {
    const path = await device('paho-will');
    const clean = nextMessage(backend, 'devices/paho-will/status', 1500);
    const left = await paho('will.py', 'paho-will', path, ['--disconnect']);
    expect(left.code, left.stderr).toBe(0);
    expect(left.lines).toContainEqual({ event: 'disconnected' });
    expect(await clean).toBeUndefined();

    const will = nextMessage(backend, 'devices/paho-will/status', 10_000);
    const died = await paho('will.py', 'paho-will', path);
    expect(died.lines).toContainEqual({ event: 'dying' });
    expect(await will).toBe('offline-unexpectedly');
  });

  it('persistent session: a QoS 1 message sent while offline arrives on reconnect with clean_session=False', async () => {
    const path = await device('paho-persist');
    const first = await paho('subscribe.py', 'paho-persist', path, ['--clean', '0', '--filter', 'devices/paho-persist/commands/#', '--qos', '1']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.lines).toContainEqual({ event: 'suback', granted: [1] });
    await backend.publishAsync('devices/paho-persist/commands/update', 'while-offline', { qos: 1 });
    const back = await paho('subscribe.py', 'paho-persist', path, ['--clean', '0', '--wait', '10']);
    expect(back.code, back.stderr).toBe(0);
    expect(back.lines).toContainEqual({ event: 'connack', rc: 0, session_present: true, client: 'paho-persist' });
    expect(back.lines).toContainEqual({ event: 'message', topic: 'devices/paho-persist/commands/update', payload: 'while-offline', qos: 1, retain: false });
  });

  it('clean session: reconnecting with clean_session=True drops what was queued', async () => {
    const path = await device('paho-clean');
    const first = await paho('subscribe.py', 'paho-clean', path, ['--clean', '0', '--filter', 'devices/paho-clean/commands/#', '--qos', '1']);
    expect(first.code, first.stderr).toBe(0);
    await backend.publishAsync('devices/paho-clean/commands/update', 'while-offline', { qos: 1 });
    // Subscribing again in the clean session does not bring the old message back (it was not retained).
    const back = await paho('subscribe.py', 'paho-clean', path, ['--clean', '1', '--filter', 'devices/paho-clean/commands/#', '--wait', '2']);
    expect(back.code, back.stderr).toBe(0);
    expect(back.lines).toContainEqual({ event: 'connack', rc: 0, session_present: false, client: 'paho-clean' });
    expect(back.lines.filter((line) => line.event === 'message')).toEqual([]);
  });

  it('disconnects a client that stops sending PINGREQ after about 1.5 x keepalive', async () => {
    const path = await device('paho-ka');
    const run = await paho('keepalive.py', 'paho-ka', path, ['--keepalive', '2', '--limit', '15']);
    expect(run.code, run.stderr).toBe(0);
    const closed = run.lines.find((line) => line.event === 'closed' || line.event === 'still-open');
    expect(closed?.event).toBe('closed');
    expect(closed?.after).toBeLessThan(10); // generous: the rule says 3 s
  });

  it('client-id takeover by the same device closes the first connection; the second keeps working', async () => {
    const path = await device('paho-take');
    const run = await paho('takeover.py', 'paho-take', path);
    expect(run.code, run.stderr).toBe(0);
    expect(run.lines.filter((line) => line.event === 'connack').map((line) => line.rc)).toEqual([0, 0]);
    expect(run.lines).toContainEqual(expect.objectContaining({ event: 'first', disconnected: true }));
    expect(run.lines).toContainEqual({ event: 'second', connected: true, puback: true });
  });
});
