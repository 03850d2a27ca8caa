import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * The shell firmware sample (firmware-samples/shell): enrollment with openssl + curl over /v1/enroll and
 * over EST, then mosquitto_pub / mosquitto_sub as the device, against an in-process gateway. The assertions
 * are on what the gateway recorded and delivered, not on what the scripts print.
 */
const samples = resolve(import.meta.dirname, '../../firmware-samples/shell');
let gw: TestGateway;
let backend: MqttClient;
const dir = makeTempDir('fleetgate-shell-');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function script(name: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((done) => {
    execFile('bash', [join(samples, name), ...args], { timeout: 20_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

const claimDir = join(dir.path, 'batch-1');
const enrollArgs = (serial: string, out: string) => [
  '--api', `https://localhost:${gw.apiPort}`,
  '--ca', join(claimDir, 'ca.crt'),
  '--claim-cert', join(claimDir, 'claim.crt'),
  '--claim-key', join(claimDir, 'claim.key'),
  '--serial', serial,
  '--out', out,
];
const connectArgs = (serial: string, out: string) => ['--host', 'localhost', '--port', String(gw.mqttPort), '--dir', out, '--serial', serial];

beforeAll(async () => {
  gw = await startTestGateway();
  const claim = await gw.issueClaim({ maxUses: 5 });
  mkdirSync(claimDir);
  writeFileSync(join(claimDir, 'claim.crt'), claim.cert);
  writeFileSync(join(claimDir, 'claim.key'), claim.key, { mode: 0o600 });
  writeFileSync(join(claimDir, 'ca.crt'), gw.ca);
  backend = await gw.connect('backend-sh', await gw.createDevice('backend-sh', { policy: 'backend' }));
  await backend.subscribeAsync('devices/+/telemetry', { qos: 1 });
});
afterAll(async () => {
  await backend?.endAsync();
  await gw?.close();
  dir.remove();
});

describe('firmware-samples/shell', () => {
  it('enrolls over HTTPS (enroll-https.sh), then publishes telemetry and receives a command (connect.sh)', async () => {
    const out = join(dir.path, 'sh-https-1');
    const enrolled = await script('enroll-https.sh', enrollArgs('sh-https-1', out));
    expect(enrolled.code, enrolled.stderr).toBe(0);
    expect(statSync(join(out, 'device.key')).mode & 0o777).toBe(0o600);
    // certificate + the API's chain (device CA, then root)
    expect(readFileSync(join(out, 'device.crt'), 'utf8').match(/BEGIN CERTIFICATE/g)?.length).toBeGreaterThanOrEqual(2);
    await gw.waitForAudit({ action: 'device.enroll', result: 'ok' }, (e) => e.deviceId === 'sh-https-1');
    expect(await gw.gateway.dataDir.registry.getDevice('sh-https-1')).toMatchObject({ status: 'active' });

    const telemetry = nextMessage(backend, 'devices/sh-https-1/telemetry', 10_000);
    const published = await script('connect.sh', [...connectArgs('sh-https-1', out), 'publish', '--message', '{"temp":21.5}']);
    expect(published.code, published.stderr).toBe(0);
    expect(await telemetry).toBe('{"temp":21.5}');

    // listen: the backend repeats a QoS 1 command until the subscriber (a separate process) is in and exits.
    const listener = spawn('bash', [join(samples, 'connect.sh'), ...connectArgs('sh-https-1', out), 'listen', '--count', '1', '--timeout', '15']);
    let output = '';
    listener.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(listener, 'exit');
    const repeat = setInterval(() => backend.publish('devices/sh-https-1/commands/reboot', 'now', { qos: 1 }), 200);
    const [code] = (await exited) as [number];
    clearInterval(repeat);
    expect(code).toBe(0);
    expect(output.trim()).toBe('devices/sh-https-1/commands/reboot now');
  });

  it('enrolls over EST (enroll-est.sh) and the certificate opens an MQTT session', async () => {
    const out = join(dir.path, 'sh-est-1');
    const enrolled = await script('enroll-est.sh', enrollArgs('sh-est-1', out));
    expect(enrolled.code, enrolled.stderr).toBe(0);
    expect(statSync(join(out, 'device.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(out, 'device.crt'), 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(2); // leaf + device CA from cacerts
    await gw.waitForAudit({ action: 'device.enroll', result: 'ok' }, (e) => e.deviceId === 'sh-est-1');
    expect(await gw.gateway.dataDir.registry.getDevice('sh-est-1')).toMatchObject({ status: 'active' });

    const telemetry = nextMessage(backend, 'devices/sh-est-1/telemetry', 10_000);
    const published = await script('connect.sh', [...connectArgs('sh-est-1', out), 'publish']);
    expect(published.code, published.stderr).toBe(0);
    expect(JSON.parse((await telemetry) ?? 'null')).toMatchObject({ ts: expect.any(Number) });
  });

  it('is idempotent for the same key, and refuses a clone (new key, same serial) with the code, also without jq', async () => {
    const out = join(dir.path, 'sh-https-1');
    const before = readFileSync(join(out, 'device.key'), 'utf8');
    const again = await script('enroll-https.sh', enrollArgs('sh-https-1', out), { FLEETGATE_NO_JQ: '1' });
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(out, 'device.key'), 'utf8')).toBe(before);

    const clone = await script('enroll-https.sh', enrollArgs('sh-https-1', join(dir.path, 'clone')), { FLEETGATE_NO_JQ: '1' });
    expect(clone.code).not.toBe(0);
    expect(clone.stderr).toMatch(/HTTP 409\): ENROLL_CLONE_SUSPECTED: .*clone/);
    await gw.waitForAudit({ action: 'device.enroll', result: 'refused' }, (e) => e.code === 'ENROLL_CLONE_SUSPECTED');

    const estClone = await script('enroll-est.sh', enrollArgs('sh-est-1', join(dir.path, 'clone-est')));
    expect(estClone.code).not.toBe(0);
    expect(estClone.stderr).toContain('ENROLL_CLONE_SUSPECTED');
  });

  it('explains bad arguments and an unreachable API', async () => {
    const missing = await script('enroll-https.sh', ['--api', 'https://localhost:1']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing --ca');
    const badSerial = await script('enroll-est.sh', enrollArgs('bad/serial', join(dir.path, 'bad')));
    expect(badSerial.code).not.toBe(0);
    expect(badSerial.stderr).toContain('not a valid device id');
    const unreachable = await script('enroll-https.sh', [...enrollArgs('sh-x', join(dir.path, 'x')).slice(2), '--api', 'https://localhost:1']);
    expect(unreachable.code).not.toBe(0);
    expect(unreachable.stderr).toContain('could not reach the API');
  });

  it('renews over HTTPS when a rotation campaign asks (connect.sh rotate, renew-https.sh), after being offline', async () => {
    const serial = 'sh-rot-1';
    const out = join(dir.path, serial);
    expect((await script('enroll-https.sh', enrollArgs(serial, out))).code).toBe(0);
    const before = readFileSync(join(out, 'device.crt'), 'utf8');
    // Offline when the campaign starts: the command waits for the device's next subscription.
    const started = await gw.api<{ id: string }>('POST', '/v1/rotations', { token: true, body: { select: 'ids', ids: [serial], ratePerSecond: 10 } });
    expect(started.status).toBe(201);
    const run = await script('connect.sh', [...connectArgs(serial, out), 'rotate', '--api', `https://localhost:${gw.apiPort}`, '--count', '1', '--timeout', '15']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`"campaignId":"${started.body.id}"`);
    expect(run.stdout).toContain(`Renewed ${serial} over HTTPS`);
    const held = readFileSync(join(out, 'device.crt'), 'utf8');
    expect(held).not.toBe(before);
    expect(statSync(join(out, 'device.key')).mode & 0o777).toBe(0o600);
    await gw.waitForAudit({ deviceId: serial, action: 'device.renew', result: 'ok' }, (e) => (e.detail as { transport?: string }).transport === 'https');
    const campaign = async () => (await gw.api<{ state: string; progress: { renewed: number } }>('GET', `/v1/rotations/${started.body.id}`, { token: true })).body;
    await expect.poll(campaign, { timeout: 10_000 }).toMatchObject({ state: 'completed', progress: { renewed: 1 } });
    // The new pair opens a session (and retires the old certificate).
    const session = await gw.connect(serial, { cert: held, key: readFileSync(join(out, 'device.key'), 'utf8') });
    session.end(true);
  });
});
