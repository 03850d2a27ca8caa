import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type ServeProcess, startServeProcess } from '../helpers/fleetgate-process.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * The factory's and the device's side with tools nobody on the team wrote: `fleetgate template set`,
 * `allowlist import` and `claim create` from the CLI, then `openssl` for the key and CSR and the Debian
 * mosquitto clients for enrollment over MQTT.
 *
 * mosquitto_pub and mosquitto_sub are separate processes, but a claim session's client id must be the
 * serial, and two sessions with one id take each other over. So the device uses a persistent session:
 * subscribe and leave (-c -E), publish the request (-c), come back for the queued QoS 1 reply (-c -C 1).
 */
const run = promisify(execFile);

describe('MQTT enrollment with openssl + mosquitto clients, claims made with the CLI', () => {
  const dir = makeTempDir();
  const dataDir = join(dir.path, 'data');
  let serve: ServeProcess;
  const cli = (args: string[]) => runCli([...args, '--data-dir', dataDir, '--api', `https://localhost:${serve.apiPort}`]);

  beforeAll(async () => {
    serve = await startServeProcess(dataDir);
  });
  afterAll(async () => {
    await serve?.stop();
    dir.remove();
  });

  it('creates a template, an allow-list and a claim, then a device enrolls and connects as itself', async () => {
    const template = await cli(['template', 'set', '--name', 'factory-7', '--require-allowlist', '--json']);
    expect(template.code, template.stderr).toBe(0);
    writeFileSync(join(dir.path, 'serials.csv'), 'serial,batch\nSN-0001,7\nSN-0002,7\n# spare\n');
    const imported = await cli(['allowlist', 'import', '--template', 'factory-7', join(dir.path, 'serials.csv'), '--json']);
    expect(JSON.parse(imported.stdout)).toMatchObject({ read: 2, added: 2, total: 2 });
    const claimDir = join(dir.path, 'claim');
    const claim = await cli(['claim', 'create', '--template', 'factory-7', '--max-uses', '2', '--expires', '1d', '--out', claimDir, '--json']);
    expect(claim.code, claim.stderr).toBe(0);

    const tls = ['--cafile', join(claimDir, 'ca.crt'), '--cert', join(claimDir, 'claim.crt'), '--key', join(claimDir, 'claim.key'), '-h', '127.0.0.1', '-p', String(serve.mqttPort), '-V', 'mqttv311'];
    const keyPath = join(dir.path, 'SN-0001.key');
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyPath]);
    const { stdout: csr } = await run('openssl', ['req', '-new', '-key', keyPath, '-subj', '/CN=SN-0001']);
    writeFileSync(join(dir.path, 'request.json'), JSON.stringify({ csr }));

    const replies = ['-t', '$fleetgate/enroll/SN-0001/accepted', '-t', '$fleetgate/enroll/SN-0001/rejected'];
    await run('mosquitto_sub', [...tls, '-i', 'SN-0001', '-c', '-q', '1', ...replies, '-E'], { timeout: 10_000 });
    await run('mosquitto_pub', [...tls, '-i', 'SN-0001', '-c', '-q', '1', '-t', '$fleetgate/enroll/SN-0001/request', '-f', join(dir.path, 'request.json')], { timeout: 10_000 });
    const { stdout: reply } = await run('mosquitto_sub', [...tls, '-i', 'SN-0001', '-c', '-q', '1', ...replies, '-C', '1', '-W', '10'], { timeout: 15_000 });
    const accepted = JSON.parse(reply) as { deviceId: string; certificate: string; chain: string };
    expect(accepted.deviceId).toBe('SN-0001');

    writeFileSync(join(dir.path, 'SN-0001.crt'), accepted.certificate + accepted.chain);
    const device = ['--cafile', join(claimDir, 'ca.crt'), '--cert', join(dir.path, 'SN-0001.crt'), '--key', keyPath, '-h', '127.0.0.1', '-p', String(serve.mqttPort), '-V', 'mqttv311', '-i', 'SN-0001'];
    await run('mosquitto_pub', [...device, '-t', 'devices/SN-0001/status', '-m', 'enrolled', '-r', '-q', '1'], { timeout: 10_000 });
    const { stdout: status } = await run('mosquitto_sub', [...device, '-t', 'devices/SN-0001/status', '-C', '1', '-W', '10'], { timeout: 15_000 });
    expect(status.trim()).toBe('enrolled');
  });

  it('refuses a serial that is not on the allow-list, with the reason in the rejected reply', async () => {
    const claimDir = join(dir.path, 'claim');
    const tls = ['--cafile', join(claimDir, 'ca.crt'), '--cert', join(claimDir, 'claim.crt'), '--key', join(claimDir, 'claim.key'), '-h', '127.0.0.1', '-p', String(serve.mqttPort), '-V', 'mqttv311'];
    const keyPath = join(dir.path, 'SN-9999.key');
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyPath]);
    const { stdout: csr } = await run('openssl', ['req', '-new', '-key', keyPath, '-subj', '/CN=SN-9999']);
    writeFileSync(join(dir.path, 'request-9999.json'), JSON.stringify({ csr }));
    const replies = ['-t', '$fleetgate/enroll/SN-9999/accepted', '-t', '$fleetgate/enroll/SN-9999/rejected'];
    await run('mosquitto_sub', [...tls, '-i', 'SN-9999', '-c', '-q', '1', ...replies, '-E'], { timeout: 10_000 });
    await run('mosquitto_pub', [...tls, '-i', 'SN-9999', '-c', '-q', '1', '-t', '$fleetgate/enroll/SN-9999/request', '-f', join(dir.path, 'request-9999.json')], { timeout: 10_000 });
    const { stdout: reply } = await run('mosquitto_sub', [...tls, '-i', 'SN-9999', '-c', '-q', '1', ...replies, '-C', '1', '-W', '10', '-v'], { timeout: 15_000 });
    expect(reply).toMatch(/^\$fleetgate\/enroll\/SN-9999\/rejected /);
    expect(reply).toContain('ENROLL_SERIAL_NOT_ALLOWED');
    expect(readFileSync(join(claimDir, 'claim.key'), 'utf8')).toMatch(/PRIVATE KEY/);
  });
});
