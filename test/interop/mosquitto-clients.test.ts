import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type ServeProcess, startServeProcess } from '../helpers/fleetgate-process.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * Interop with clients nobody on the team wrote: Debian's mosquitto_pub / mosquitto_sub (libmosquitto +
 * OpenSSL) against `fleetgate serve`, with a device made by `fleetgate device create`.
 */
const execFileAsync = promisify(execFile);

describe('mosquitto clients over mTLS', () => {
  const dir = makeTempDir();
  const dataDir = join(dir.path, 'data');
  let serve: ServeProcess;
  const tls = (id: string) => ['--cafile', join(dir.path, id, 'ca.crt'), '--cert', join(dir.path, id, 'device.crt'), '--key', join(dir.path, id, 'device.key')];
  const target = () => ['-h', '127.0.0.1', '-p', String(serve.mqttPort), '-V', 'mqttv311'];

  beforeAll(async () => {
    serve = await startServeProcess(dataDir);
    for (const id of ['mosq-a', 'mosq-b']) {
      const created = await runCli(['device', 'create', '--id', id, '--out', join(dir.path, id), '--data-dir', dataDir, '--api', `https://localhost:${serve.apiPort}`]);
      expect(created.code, created.stderr).toBe(0);
    }
  });
  afterAll(async () => {
    await serve?.stop();
    dir.remove();
  });

  async function run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync(command, args, { timeout: 15_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  it('publishes with mosquitto_pub and receives with mosquitto_sub on the device topics', async () => {
    // Client ids are bound to the device, so publisher and subscriber are the same device in turn: a retained
    // message carries the payload from one session to the next.
    const pub = await run('mosquitto_pub', [...tls('mosq-a'), ...target(), '-i', 'mosq-a', '-t', 'devices/mosq-a/status', '-m', 'online', '-r', '-q', '1']);
    expect(pub.code, pub.stderr).toBe(0);
    const sub = await run('mosquitto_sub', [...tls('mosq-a'), ...target(), '-i', 'mosq-a', '-t', 'devices/mosq-a/#', '-C', '1', '-v', '-W', '10']);
    expect(sub.code, sub.stderr).toBe(0);
    expect(sub.stdout.trim()).toBe('devices/mosq-a/status online');
  });

  it('live delivery between two sessions of the same device topics (subscriber, then publisher as the device)', async () => {
    const sub = spawn('mosquitto_sub', [...tls('mosq-b'), ...target(), '-i', 'mosq-b', '-t', 'devices/mosq-b/in', '-C', '1', '-W', '10']);
    let output = '';
    sub.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(sub, 'exit');
    await new Promise((resolve) => setTimeout(resolve, 500));
    // mosq-a may not write to mosq-b's topics: refused and disconnected, so mosquitto_pub reports an error
    // or the message is simply never delivered; the subscriber must not see it.
    await run('mosquitto_pub', [...tls('mosq-a'), ...target(), '-i', 'mosq-a', '-t', 'devices/mosq-b/in', '-m', 'spoofed', '-q', '1']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(output).toBe('');
    sub.kill();
    await exited;
  });

  it('refuses mosquitto_sub asking for # and mosquitto_pub without a certificate or with another id', async () => {
    const wildcard = await run('mosquitto_sub', [...tls('mosq-a'), ...target(), '-i', 'mosq-a', '-t', '#', '-W', '5']);
    // mosquitto_sub 2.0.11 reports the SUBACK 0x80 and disconnects (its exit code stays 0).
    expect(wildcard.stderr).toMatch(/All subscription requests were denied/);

    const noCert = await run('mosquitto_pub', ['--cafile', join(dir.path, 'mosq-a', 'ca.crt'), ...target(), '-i', 'mosq-a', '-t', 'devices/mosq-a/x', '-m', 'x']);
    expect(noCert.code).not.toBe(0);
    expect(noCert.stderr).toMatch(/not authori[sz]ed/i);

    const spoof = await run('mosquitto_pub', [...tls('mosq-a'), ...target(), '-i', 'mosq-b', '-t', 'devices/mosq-b/x', '-m', 'x']);
    expect(spoof.code).not.toBe(0);
    expect(spoof.stderr).toMatch(/identifier rejected/i);
  });

  it('disconnects a connected mosquitto_sub when the device is revoked with the CLI, and refuses its reconnect', async () => {
    const created = await runCli(['device', 'create', '--id', 'mosq-c', '--out', join(dir.path, 'mosq-c'), '--data-dir', dataDir, '--api', `https://localhost:${serve.apiPort}`]);
    expect(created.code, created.stderr).toBe(0);
    const sub = spawn('mosquitto_sub', [...tls('mosq-c'), ...target(), '-i', 'mosq-c', '-t', 'devices/mosq-c/#']);
    let stderr = '';
    sub.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(sub, 'exit') as Promise<[number | null]>;
    await new Promise((resolve) => setTimeout(resolve, 700)); // connected and subscribed
    expect(sub.exitCode).toBeNull();

    const revoked = await runCli(['device', 'revoke', 'mosq-c', '--reason', 'keyCompromise', '--data-dir', dataDir, '--api', `https://localhost:${serve.apiPort}`]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const [code] = await Promise.race([exited, new Promise<[number | null]>((resolve) => setTimeout(() => resolve([-1]), 10_000))]);
    sub.kill();
    expect(code).not.toBe(-1);
    expect(stderr).toMatch(/connection was lost/i);
    const again = await run('mosquitto_sub', [...tls('mosq-c'), ...target(), '-i', 'mosq-c', '-t', 'devices/mosq-c/#', '-W', '5']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/not authori[sz]ed/i);
  });
});

