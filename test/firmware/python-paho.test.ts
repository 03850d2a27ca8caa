import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { expectEnrolledAndRenewed } from '../helpers/firmware-checks.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';

/**
 * firmware-samples/python-paho run as a real device against an in-process gateway with Debian's
 * python3-paho-mqtt and python3-cryptography: enrollment with a claim, telemetry, commands, renewal, a
 * reboot that reuses the state directory, and a clone that is refused. Assertions are on what the gateway
 * recorded (registry, audit log) and what a backend service received.
 */
const python = '/usr/bin/python3';
const script = resolve(import.meta.dirname, '../../firmware-samples/python-paho/fleetgate_device.py');
const hasPaho = spawnSync(python, ['-c', 'import paho.mqtt, cryptography'], { stdio: 'ignore' }).status === 0;
if (!hasPaho) console.warn(`skipping the python-paho firmware sample: ${python} cannot import paho.mqtt and cryptography (apt-get install python3-paho-mqtt python3-cryptography)`);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the sample to completion; never rejects, so a refusal's exit code and output can be asserted. */
function runDevice(args: string[], timeout = 60_000): Promise<Run> {
  return new Promise((done) => {
    execFile(python, [script, ...args], { timeout }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      done({ code, stdout, stderr });
    });
  });
}

type Telemetry = { serial: string; seq: number };

describe.skipIf(!hasPaho)('python-paho firmware sample against a live gateway', () => {
  const dir = makeTempDir();
  const serial = 'SN-PY-0001';
  const stateDir = join(dir.path, 'state');
  let gw: TestGateway;
  let backend: MqttClient;
  let baseArgs: string[];
  const telemetry: Telemetry[] = [];

  beforeAll(async () => {
    gw = await startTestGateway();
    const claim = await gw.issueClaim({ maxUses: 5 });
    writeFileSync(join(dir.path, 'ca.crt'), gw.ca);
    writeFileSync(join(dir.path, 'claim.crt'), claim.cert);
    writeFileSync(join(dir.path, 'claim.key'), claim.key, { mode: 0o600 });
    baseArgs = ['--host', '127.0.0.1', '--port', String(gw.mqttPort), '--ca', join(dir.path, 'ca.crt'), '--claim-cert', join(dir.path, 'claim.crt'), '--claim-key', join(dir.path, 'claim.key'), '--timeout', '10', '--max-attempts', '3'];

    // A backend service: records telemetry and answers the first message of each session with a command.
    backend = await gw.connect('backend-py', await gw.createDevice('backend-py', { policy: 'backend' }));
    backend.on('message', (topic, payload) => {
      if (topic !== `devices/${serial}/telemetry`) return;
      const message = JSON.parse(payload.toString()) as Telemetry;
      telemetry.push(message);
      if (message.seq === 1) backend.publish(`devices/${serial}/commands/blink`, JSON.stringify({ times: telemetry.length }), { qos: 1 });
    });
    await backend.subscribeAsync('devices/+/telemetry', { qos: 1 });
  });
  afterAll(async () => {
    await backend?.endAsync();
    await gw?.close();
    dir.remove();
  });

  it('enrolls with the claim, renews, reconnects with the new certificate and publishes telemetry', async () => {
    const run = await runDevice([...baseArgs, '--serial', serial, '--state-dir', stateDir, '--renew-now', '--telemetry-count', '3', '--telemetry-interval', '0.2']);
    expect(run.code, run.stderr + run.stdout).toBe(0);

    await expectEnrolledAndRenewed(gw, serial, stateDir);

    await expect.poll(() => telemetry.filter((m) => m.serial === serial).map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(run.stdout).toContain('enrolled as SN-PY-0001');
    expect(run.stdout).toContain('renewed: certificate');
  });

  it('reuses its state on the next boot: no second enrollment, same certificate, commands arrive', async () => {
    telemetry.length = 0;
    const before = readFileSync(join(stateDir, 'device.crt'), 'utf8');
    const run = await runDevice([...baseArgs, '--serial', serial, '--state-dir', stateDir, '--telemetry-count', '3', '--telemetry-interval', '1']);
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(run.stdout).toContain('already enrolled, skipping enrollment');
    expect(readFileSync(join(stateDir, 'device.crt'), 'utf8')).toBe(before);
    expect(run.stdout).toMatch(/command devices\/SN-PY-0001\/commands\/blink: /);
    await expect.poll(() => telemetry.map((m) => m.seq)).toEqual([1, 2, 3]);

    const { registry } = gw.gateway.dataDir;
    expect(await registry.queryAudit({ deviceId: serial, action: 'device.enroll' })).toHaveLength(1);
    expect(await registry.queryAudit({ deviceId: serial, action: 'device.renew' })).toHaveLength(1);
    expect(await registry.listCertificates(serial)).toHaveLength(2);
  });

  it('stops with ENROLL_CLONE_SUSPECTED when another key asks for an enrolled serial', async () => {
    const run = await runDevice([...baseArgs, '--serial', serial, '--state-dir', join(dir.path, 'clone-state'), '--telemetry-count', '1']);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain('ENROLL_CLONE_SUSPECTED');
    await gw.waitForAudit({ deviceId: serial, action: 'device.enroll', result: 'refused' }, (e) => e.code === 'ENROLL_CLONE_SUSPECTED');
    expect((await gw.gateway.dataDir.registry.listCertificates(serial)).filter((c) => c.status === 'active')).toHaveLength(1);
  });

  it('renews when a rotation campaign asks, on the next boot after it was offline', async () => {
    const rotated = 'SN-PY-0003';
    const state = join(dir.path, 'rotated-state');
    const first = await runDevice([...baseArgs, '--serial', rotated, '--state-dir', state, '--telemetry-count', '1', '--telemetry-interval', '0.2']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    // The device is offline when the campaign starts: the command waits for its next session.
    const started = await gw.api<{ id: string }>('POST', '/v1/rotations', { token: true, body: { select: 'ids', ids: [rotated], ratePerSecond: 10 } });
    expect(started.status).toBe(201);
    await expect.poll(async () => (await gw.api<{ progress: { offline: number } }>('GET', `/v1/rotations/${started.body.id}`, { token: true })).body.progress.offline).toBe(1);

    const run = await runDevice([...baseArgs, '--serial', rotated, '--state-dir', state, '--telemetry-count', '2', '--telemetry-interval', '1']);
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(run.stdout).toContain(`rotation campaign ${started.body.id}: renewing now`);
    expect(run.stdout).toContain(`renewing (rotation campaign ${started.body.id})`);
    await expect
      .poll(async () => (await gw.api<{ state: string; progress: unknown }>('GET', `/v1/rotations/${started.body.id}`, { token: true })).body, { timeout: 10_000 })
      .toMatchObject({ state: 'completed', progress: { selected: 1, notified: 1, renewed: 1, failed: 0, offline: 0 } });
    const held = readFileSync(join(state, 'device.crt'), 'utf8');
    const active = (await gw.gateway.dataDir.registry.listCertificates(rotated)).filter((c) => c.status === 'active');
    expect(active).toHaveLength(1);
    expect(held.startsWith(active[0]?.pem.trim() ?? '-')).toBe(true);
  });

  it('stops with CONNACK_5 when its claim was revoked, without retrying', async () => {
    const claim = await gw.issueClaim({ maxUses: 5 });
    writeFileSync(join(dir.path, 'revoked.crt'), claim.cert);
    writeFileSync(join(dir.path, 'revoked.key'), claim.key, { mode: 0o600 });
    expect((await gw.api('POST', `/v1/claims/${claim.claimId}/revoke`, { token: true })).status).toBe(200);
    const args = [...baseArgs, '--claim-cert', join(dir.path, 'revoked.crt'), '--claim-key', join(dir.path, 'revoked.key')];
    const run = await runDevice([...args, '--serial', 'SN-PY-0002', '--state-dir', join(dir.path, 'revoked-state')]);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain('CONNACK_5');
    expect(run.stdout).not.toContain('retrying');
    expect(await gw.gateway.dataDir.registry.getDevice('SN-PY-0002')).toBeUndefined();
  });
});
