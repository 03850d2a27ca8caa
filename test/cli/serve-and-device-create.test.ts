import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, nextMessage } from '../helpers/test-gateway.ts';
import { runCli, type ServeProcess, startServeProcess } from '../helpers/fleetgate-process.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

const mode = (path: string) => statSync(path).mode & 0o777;

describe('fleetgate serve + device create (real processes)', () => {
  const dir = makeTempDir();
  const dataDir = join(dir.path, 'data');
  let serve: ServeProcess;
  const api = () => `https://localhost:${serve.apiPort}`;

  beforeAll(async () => {
    serve = await startServeProcess(dataDir);
  });
  afterAll(async () => {
    await serve?.stop();
    dir.remove();
  });

  it('creates the PKI, admin token and registry on first start, with secrets owner-only', () => {
    expect(serve.stdout()).toMatch(/first start: created PKI/);
    for (const secret of ['pki/root-ca.key', 'pki/device-ca.key', 'pki/claim-ca.key', 'pki/server.key', 'admin.token']) {
      expect(mode(join(dataDir, secret)), secret).toBe(0o600);
    }
    expect(readFileSync(join(dataDir, 'pki/ca.crt'), 'utf8')).toMatch(/BEGIN CERTIFICATE/);
  });

  it('registers a device whose files let it connect and use its topics', async () => {
    const out = join(dir.path, 'sensor-7');
    const created = await runCli(['device', 'create', '--id', 'sensor-7', '--out', out, '--data-dir', dataDir, '--api', api(), '--json']);
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ id: 'sensor-7', serial: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(mode(join(out, 'device.key'))).toBe(0o600);

    const credential = { key: readFileSync(join(out, 'device.key'), 'utf8'), cert: readFileSync(join(out, 'device.crt'), 'utf8') };
    const client = await connectClient(serve.mqttPort, readFileSync(join(out, 'ca.crt'), 'utf8'), 'sensor-7', credential);
    await client.subscribeAsync('devices/sensor-7/#');
    const received = nextMessage(client, 'devices/sensor-7/telemetry');
    await client.publishAsync('devices/sensor-7/telemetry', '{"t":21.5}', { qos: 1 });
    expect(await received).toBe('{"t":21.5}');
    await client.endAsync();
  });

  it('refuses a duplicate id or an invalid id with a coded error, leaving no key behind', async () => {
    const again = await runCli(['device', 'create', '--id', 'sensor-7', '--out', join(dir.path, 'dup'), '--data-dir', dataDir, '--api', api(), '--json']);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stderr)).toMatchObject({ code: 'DEVICE_EXISTS' });
    const bad = await runCli(['device', 'create', '--id', 'bad/id', '--out', join(dir.path, 'bad'), '--data-dir', dataDir, '--api', api()]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/DEVICE_ID_INVALID/);
    expect(() => statSync(join(dir.path, 'dup', 'device.key'))).toThrow();
    expect(() => statSync(join(dir.path, 'bad', 'device.key'))).toThrow();
  });

  it('shuts down cleanly on SIGTERM and reuses the same CA on the next start', async () => {
    const caBefore = readFileSync(join(dataDir, 'pki/ca.crt'), 'utf8');
    expect(await serve.stop()).toBe(0);
    serve = await startServeProcess(dataDir);
    expect(serve.stdout()).not.toMatch(/first start/);
    expect(readFileSync(join(dataDir, 'pki/ca.crt'), 'utf8')).toBe(caBefore);
  });

  it('reports every configuration problem at once', async () => {
    const result = await runCli(['serve', '--data-dir', dataDir, '--mqtt-port', 'abc', '--api-port', '70000']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--mqtt-port/);
    expect(result.stderr).toMatch(/--api-port/);
  });
});
