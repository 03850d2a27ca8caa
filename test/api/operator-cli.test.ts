import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { followAudit, registerOperatorCommands } from '../../cli/operator-commands.ts';
import { operatorClient } from '../../cli/operator-context.ts';
import { closed, nextMessage, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * The operator subcommands, run in-process against the fleet API (over HTTPS, with the data directory's
 * admin.token and ca.crt, as `fleetgate` would): output, files, and their effect on live MQTT sessions.
 */
let gw: TestGateway;
const dir = makeTempDir();
const apiUrl = () => `https://localhost:${gw.apiPort}`;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
  dir.remove();
});

/** Runs `fleetgate <args>` with a fresh command tree (commander keeps option values between parses). */
async function cli(args: string[]): Promise<string> {
  const program = new Command('fleetgate').exitOverride();
  const device = program.command('device');
  registerOperatorCommands(program, { device });
  program.commands.forEach(function quiet(command: Command): void {
    command.exitOverride().configureOutput({ writeErr: () => {} });
    command.commands.forEach(quiet);
  });
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  try {
    await program.parseAsync([...args, '--api', apiUrl(), '--data-dir', gw.dataDirPath], { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return chunks.join('');
}

const json = async <T>(args: string[]): Promise<T> => JSON.parse(await cli([...args, '--json'])) as T;

describe('fleetgate service / device / session', () => {
  it('service create writes a key made here (0600), its certificate and the CA; the service then reads device telemetry', async () => {
    const out = join(dir.path, 'svc');
    const created = await json<{ name: string; policy: string; files: { certificate: string; key: string; ca: string } }>(['service', 'create', '--name', 'cli-backend', '--out', out]);
    expect(created).toMatchObject({ name: 'cli-backend', policy: 'backend' });
    expect(statSync(created.files.key).mode & 0o777).toBe(0o600);
    const credential = { key: readFileSync(created.files.key, 'utf8'), cert: readFileSync(created.files.certificate, 'utf8') };
    expect(readFileSync(created.files.ca, 'utf8')).toBe(gw.ca);

    const service = await gw.connect('cli-backend', credential);
    await service.subscribeAsync('devices/+/telemetry');
    const device = await gw.connect('cli-dev-1', await gw.createDevice('cli-dev-1'));
    const received = nextMessage(service, 'devices/cli-dev-1/telemetry');
    await device.publishAsync('devices/cli-dev-1/telemetry', 'hello', { qos: 1 });
    expect(await received).toBe('hello');

    expect((await json<{ items: { id: string }[] }>(['service', 'list'])).items.map((s) => s.id)).toContain('cli-backend');
    const sessions = await json<{ items: { clientId: string }[] }>(['session', 'list']);
    expect(sessions.items.map((s) => s.clientId)).toEqual(expect.arrayContaining(['cli-backend', 'cli-dev-1']));

    // A device id is not a service name: `service revoke` refuses it rather than revoking the device.
    await expect(cli(['service', 'revoke', 'cli-dev-1', '--reason', 'superseded'])).rejects.toThrow(/is a device, not a service/);
    const serviceClosed = closed(service);
    expect(await json(['service', 'revoke', 'cli-backend', '--reason', 'privilegeWithdrawn'])).toMatchObject({ status: 'revoked', kind: 'service' });
    expect(await serviceClosed).toBe(true);
    await device.endAsync();
  });

  it('service create refuses a non-empty --out and leaves no key behind when the gateway refuses', async () => {
    const out = join(dir.path, 'svc-dup');
    await json(['service', 'create', '--name', 'cli-backend-2', '--out', out]);
    await expect(cli(['service', 'create', '--name', 'cli-backend-3', '--out', out])).rejects.toThrow(/already exist/);
    const refused = join(dir.path, 'svc-refused');
    await expect(cli(['service', 'create', '--name', 'cli-backend-2', '--out', refused])).rejects.toMatchObject({ code: 'DEVICE_EXISTS' });
    expect(() => statSync(join(refused, 'service.key'))).toThrow();
  });

  it('device list / show / suspend / resume / revoke, with the live session cut at once', async () => {
    const credential = await gw.createDevice('cli-dev-2');
    const client = await gw.connect('cli-dev-2', credential);
    const table = await cli(['device', 'list', '--prefix', 'cli-dev-2']);
    expect(table).toMatch(/^ID\s+KIND\s+STATUS/);
    expect(table).toMatch(/cli-dev-2\s+device\s+active/);
    expect(await cli(['device', 'show', 'cli-dev-2'])).toMatch(/session\s+connected since/);

    const suspendedClosed = closed(client);
    expect(await cli(['device', 'suspend', 'cli-dev-2', '--reason', 'maintenance'])).toMatch(/cli-dev-2 suspended: status suspended \(maintenance\)/);
    expect(await suspendedClosed).toBe(true);
    expect(await json(['device', 'resume', 'cli-dev-2'])).toMatchObject({ status: 'active' });

    const again = await gw.connect('cli-dev-2', credential);
    const revokedClosed = closed(again);
    await expect(cli(['device', 'revoke', 'cli-dev-2', '--reason', 'certificateHold'])).rejects.toMatchObject({ code: 'commander.invalidArgument' });
    await expect(cli(['device', 'revoke', 'cli-dev-2'])).rejects.toMatchObject({ code: 'commander.missingMandatoryOptionValue' });
    expect(await cli(['device', 'revoke', 'cli-dev-2', '--reason', 'keyCompromise'])).toMatch(/revoked: status revoked \(keyCompromise\)/);
    expect(await revokedClosed).toBe(true);
    await expect(gw.connect('cli-dev-2', credential)).rejects.toMatchObject({ code: 5 });
    await expect(cli(['device', 'resume', 'cli-dev-2'])).rejects.toMatchObject({ code: 'DEVICE_REVOKED_FINAL' });
    const shown = await cli(['device', 'show', 'cli-dev-2']);
    expect(shown).toMatch(/^[0-9a-f]+\s+revoked\s.*keyCompromise$/m);
  });
});

describe('fleetgate policy', () => {
  it('get prints the bare document, set loads it back as a new version, explain names the deciding statement', async () => {
    const document = await cli(['policy', 'get', 'default']);
    expect(JSON.parse(document)).toMatchObject({ statements: [{ sid: 'own-topics' }] });
    const file = join(dir.path, 'cli-policy.json');
    const edited = JSON.parse(document) as { statements: unknown[] };
    edited.statements.push({ sid: 'no-debug', effect: 'deny', actions: ['publish'], topics: ['devices/${device.id}/debug/#'] });
    writeFileSync(file, JSON.stringify(edited));
    expect(await json(['policy', 'set', 'cli-policy', '--file', file])).toMatchObject({ name: 'cli-policy', version: 1 });
    writeFileSync(file, await cli(['policy', 'get', 'cli-policy', '--json'])); // the --json form is accepted too
    expect(await json(['policy', 'set', 'cli-policy', '--file', file])).toMatchObject({ version: 2 });

    await gw.createDevice('cli-dev-3', { policy: 'cli-policy' });
    const allowed = await cli(['policy', 'explain', '--device', 'cli-dev-3', '--action', 'publish', '--topic', 'devices/cli-dev-3/telemetry']);
    expect(allowed).toMatch(/^ALLOWED/);
    expect(allowed).toMatch(/statement 0 "own-topics"/);
    const denied = await json<{ allowed: boolean; statementIndex: number; policy: string }>(['policy', 'explain', '--device', 'cli-dev-3', '--action', 'publish', '--topic', 'devices/cli-dev-3/debug/x']);
    expect(denied).toMatchObject({ allowed: false, statementIndex: 1, policy: 'cli-policy' });

    writeFileSync(file, JSON.stringify({ statements: [{ effect: 'allow', actions: ['publish'], topics: ['a/#/b'] }] }));
    await expect(cli(['policy', 'set', 'cli-policy', '--file', file])).rejects.toMatchObject({ code: 'POLICY_INVALID' });
  });
});

describe('fleetgate audit', () => {
  it('lists entries oldest first with filters, and --follow prints new ones as they are written', async () => {
    await gw.createDevice('cli-dev-4');
    await cli(['device', 'suspend', 'cli-dev-4']);
    const entries = await json<{ action: string }[]>(['audit', '--device', 'cli-dev-4']);
    expect(entries.map((e) => e.action)).toEqual(['device.register', 'device.suspend']);
    expect(await cli(['audit', '--device', 'cli-dev-4', '--action', 'device.suspend'])).toMatch(/device\.suspend\s+ok\s+cli-dev-4/);

    const client = operatorClient({ api: apiUrl(), dataDir: gw.dataDirPath });
    const controller = new AbortController();
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(...String(chunk).trim().split('\n'));
      return true;
    });
    try {
      const following = followAudit(client, { deviceId: 'cli-dev-4' }, [], true, controller.signal, 50);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await gw.api('POST', '/v1/devices/cli-dev-4/resume', { token: true });
      for (let i = 0; i < 100 && lines.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      controller.abort();
      await following;
    } finally {
      spy.mockRestore();
    }
    expect(lines.map((line) => (JSON.parse(line) as { action: string }).action)).toEqual(['device.resume']);
  });
});
