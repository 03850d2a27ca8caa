import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, resolveDataDir, resolveServeConfig, resolveSettings } from '../../cli/config.ts';
import { runCli, startFleetgateProcess } from '../helpers/fleetgate-process.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

const dir = makeTempDir('fleetgate-config-');
afterAll(() => dir.remove());

let files = 0;
/** Writes a config file in the test's directory and returns its path. */
function configFile(text: string): string {
  const path = join(dir.path, `fleetgate-${++files}.yaml`);
  writeFileSync(path, text);
  return path;
}

function problemsOf(action: () => unknown): readonly string[] {
  try {
    action();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('config file: precedence flag > env > file > default', () => {
  const path = configFile('mqttPort: 1111\napiPort: 2111\nlogLevel: warn\npublishRate: 50\n');

  it('takes each setting from the highest layer that gives it, and says which', () => {
    const problems: string[] = [];
    const resolved = resolveSettings({ config: path, mqttPort: '3333' }, { FLEETGATE_MQTT_PORT: '2222', FLEETGATE_API_PORT: '2222' }, problems);
    expect(problems).toEqual([]);
    expect(resolved.values).toMatchObject({ mqttPort: 3333, apiPort: 2222, logLevel: 'warn', publishRate: 50, connectRate: 1000 });
    expect(resolved.sources.mqttPort).toEqual({ source: 'flag', from: '--mqtt-port' });
    expect(resolved.sources.apiPort).toEqual({ source: 'env', from: 'FLEETGATE_API_PORT' });
    expect(resolved.sources.logLevel).toEqual({ source: 'file', from: `${path}:3` });
    expect(resolved.sources.connectRate).toEqual({ source: 'default' });
  });

  it('reads the file from FLEETGATE_CONFIG, and --config wins over it', () => {
    const other = configFile('mqttPort: 4444\n');
    expect(resolveServeConfig({}, { FLEETGATE_CONFIG: path }).mqttPort).toBe(1111);
    expect(resolveServeConfig({ config: other }, { FLEETGATE_CONFIG: path }).mqttPort).toBe(4444);
    expect(resolveServeConfig({}, {}).mqttPort).toBe(8883);
  });

  it('gives the server config the file values (per-device limits included)', () => {
    const config = resolveServeConfig({ config: path }, {});
    expect(config.flow.publishPerSecond).toBe(50);
    expect(config.logLevel).toBe('warn');
  });

  it('resolves a relative dataDir against the file, and operator commands find it too', () => {
    const path = configFile('dataDir: ./site-data\n');
    expect(resolveServeConfig({ config: path }, {}).dataDir).toBe(join(dir.path, 'site-data'));
    expect(resolveDataDir(undefined, { FLEETGATE_CONFIG: path })).toBe(join(dir.path, 'site-data'));
    expect(resolveDataDir('elsewhere', { FLEETGATE_CONFIG: path })).toBe(join(process.cwd(), 'elsewhere'));
  });

  it('derives the per-source limits from the file limits they follow', () => {
    const config = resolveServeConfig({ config: configFile('maxPendingHandshakes: 800\nmaxConnections: 1000\n') }, {});
    expect(config.flow).toMatchObject({ maxPendingHandshakesPerSource: 100, maxConnectionsPerSource: 100 });
  });
});

describe('config file: secrets as files', () => {
  const tokenPath = join(dir.path, 'broker.token');
  writeFileSync(tokenPath, 'from-env-file\n');
  writeFileSync(join(dir.path, 'file.token'), 'from-config-file\n');

  it('keeps FLEETGATE_BROKER_TOKEN_FILE working, over the file', () => {
    const path = configFile('brokerTokenFile: file.token\n');
    expect(resolveServeConfig({ config: path }, { FLEETGATE_BROKER_TOKEN_FILE: tokenPath }).brokerToken).toBe('from-env-file');
    expect(resolveServeConfig({ config: path }, {}).brokerToken).toBe('from-config-file');
    expect(resolveServeConfig({ config: path }, { FLEETGATE_BROKER_TOKEN: 'direct', FLEETGATE_BROKER_TOKEN_FILE: tokenPath }).brokerToken).toBe('direct');
  });

  it('reads a database URL from FLEETGATE_DATABASE_URL_FILE', () => {
    const urlPath = join(dir.path, 'db.url');
    writeFileSync(urlPath, 'postgres://fleet:pw@127.0.0.1:5432/fleet\n');
    expect(resolveServeConfig({}, { FLEETGATE_DATABASE_URL_FILE: urlPath }).databaseUrl).toBe('postgres://fleet:pw@127.0.0.1:5432/fleet');
  });
});

describe('config file: refusals', () => {
  it('refuses an unknown key with its name and line, suggesting the key meant', () => {
    const path = configFile('# a comment\nmqttPort: 8883\n\nmqtt_port: 1883\nbrokerToken: x\nfrobnicate: true\n');
    expect(problemsOf(() => resolveServeConfig({ config: path }, {}))).toEqual([
      `${path}:4: unknown key "mqtt_port"; did you mean "mqttPort"?`,
      `${path}:6: unknown key "frobnicate" (\`fleetgate config print\` lists the keys)`,
    ]);
  });

  it('reports every invalid value at once: file lines, variables and flags', () => {
    const path = configFile('mqttPort: 70000\nlogLevel: loud\nredisUrl: http://redis:6379\nworkers: 2\nhostname: [a, b]\n');
    const problems = problemsOf(() => resolveServeConfig({ config: path, apiPort: 'x' }, { FLEETGATE_CONNECT_RATE: '-1', FLEETGATE_DATABASE_URL: 'mysql://root:hunter2@db/x' }));
    expect(problems).toEqual(
      expect.arrayContaining([
        `${path}:1: mqttPort must be a port number 0-65535 (0 picks a free port), got "70000"`,
        `${path}:2: logLevel must be one of fatal, error, warn, info, debug, trace, silent, got "loud"`,
        `${path}:3: redisUrl must be a redis:// or rediss:// URL, got "http://redis:6379"`,
        `${path}:4: unknown key "workers" (\`fleetgate config print\` lists the keys)`,
        `${path}:5: hostname must be a single value, not a list or map`,
        '--api-port must be a port number 0-65535 (0 picks a free port), got "x"',
        'FLEETGATE_CONNECT_RATE must be a positive integer, got "-1"',
      ]),
    );
    expect(problems).toHaveLength(8);
    expect(problems.join('\n')).not.toContain('hunter2');
  });

  it('reports a value overridden by a flag too: the file is wrong either way', () => {
    const path = configFile('mqttPort: many\n');
    expect(problemsOf(() => resolveServeConfig({ config: path, mqttPort: '1883' }, {}))).toEqual([`${path}:1: mqttPort must be a port number 0-65535 (0 picks a free port), got "many"`]);
  });

  it('reports YAML syntax errors, a missing file, a file that is not a map and a key without a value', () => {
    expect(problemsOf(() => resolveServeConfig({ config: configFile('mqttPort: 1\n\tapiPort: 2\n') }, {}))).toEqual([expect.stringMatching(/fleetgate-\d+\.yaml:2: Tabs are not allowed as indentation$/)]);
    expect(problemsOf(() => resolveServeConfig({ config: join(dir.path, 'absent.yaml') }, {}))).toEqual([`--config: cannot read ${join(dir.path, 'absent.yaml')} (ENOENT)`]);
    expect(problemsOf(() => resolveServeConfig({ config: configFile('- mqttPort\n') }, {}))[0]).toMatch(/:1: the config file must be a map of settings/);
    expect(problemsOf(() => resolveServeConfig({ config: configFile('mqttPort: 1\nmqttPort: 2\n') }, {}))[0]).toMatch(/:2: .*unique/);
    const path = configFile('apiPort:\n');
    expect(problemsOf(() => resolveServeConfig({ config: path }, {}))).toEqual([`${path}:1: apiPort must be a single value (remove the line to use the default)`]);
  });

  it('treats an empty file as no settings', () => {
    expect(resolveServeConfig({ config: configFile('# nothing yet\n') }, {}).mqttPort).toBe(8883);
  });
});

describe('fleetgate config print (real process)', () => {
  it('shows each effective value and its source, with secrets redacted', async () => {
    const tokenPath = join(dir.path, 'print.token');
    writeFileSync(tokenPath, 'tok-very-secret-value\n');
    const path = configFile('mqttPort: 1111\napiPort: 2111\ndatabaseUrl: postgres://fleet:db-very-secret@db.example:5432/fleet\n');
    const printed = await runCli(['config', 'print', '--config', path, '--api-port', '3111', '--json'], {
      FLEETGATE_API_PORT: '2222',
      FLEETGATE_CONNECT_RATE: '5',
      FLEETGATE_REDIS_URL: 'redis://:redis-very-secret@127.0.0.1:6379/0',
      FLEETGATE_BROKER_TOKEN_FILE: tokenPath,
      FLEETGATE_CONFIG: '',
    });
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).not.toMatch(/very-secret/);
    const report = JSON.parse(printed.stdout) as { configPath: string; settings: { key: string; value: unknown; source: string; from: string | null }[] };
    const byKey = new Map(report.settings.map((s) => [s.key, s]));
    expect(report.configPath).toBe(path);
    expect(byKey.get('mqttPort')).toEqual({ key: 'mqttPort', value: 1111, source: 'file', from: `${path}:1` });
    expect(byKey.get('apiPort')).toEqual({ key: 'apiPort', value: 3111, source: 'flag', from: '--api-port' });
    expect(byKey.get('connectRate')).toEqual({ key: 'connectRate', value: 5, source: 'env', from: 'FLEETGATE_CONNECT_RATE' });
    expect(byKey.get('publishRate')).toEqual({ key: 'publishRate', value: 1000, source: 'default', from: null });
    expect(byKey.get('databaseUrl')).toEqual({ key: 'databaseUrl', value: 'postgres://fleet:***@db.example:5432/fleet', source: 'file', from: `${path}:3` });
    expect(byKey.get('redisUrl')).toMatchObject({ value: 'redis://:***@127.0.0.1:6379/0', source: 'env' });
    expect(byKey.get('brokerToken')).toEqual({ key: 'brokerToken', value: '[redacted]', source: 'env', from: 'FLEETGATE_BROKER_TOKEN_FILE' });

    const text = await runCli(['config', 'print', '--config', path], { FLEETGATE_BROKER_TOKEN_FILE: tokenPath, FLEETGATE_CONFIG: '' });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^mqttPort +1111 +file +${path.replace(/[.]/g, '\\.')}:1$`, 'm'));
    expect(text.stdout).not.toMatch(/very-secret/);
  });

  it('lists every problem and exits 2', async () => {
    const path = configFile('mqtt_port: 1\napiPort: x\n');
    const printed = await runCli(['config', 'print', '--json'], { FLEETGATE_CONFIG: path });
    expect(printed.code).toBe(2);
    expect(JSON.parse(printed.stderr)).toEqual({
      code: 'CONFIG_INVALID',
      problems: [`${path}:1: unknown key "mqtt_port"; did you mean "mqttPort"?`, `${path}:2: apiPort must be a port number 0-65535 (0 picks a free port), got "x"`],
    });
  });
});

/** A port that was free a moment ago: the file must name a real port, not 0. */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

describe('fleetgate serve --config (real process)', () => {
  it('listens on the ports the file names, with its data directory', async () => {
    const [mqttPort, apiPort] = [await freePort(), await freePort()];
    const path = configFile(`dataDir: ./served\nhost: 127.0.0.1\nhostname: localhost\nmqttPort: ${mqttPort}\napiPort: ${apiPort}\n`);
    const serve = await startFleetgateProcess(['serve', '--config', path]);
    try {
      expect(serve.readyLine).toBe(`fleetgate ready mqtt=mqtts://127.0.0.1:${mqttPort} api=https://127.0.0.1:${apiPort} data=${join(dir.path, 'served')}`);
      const ca = readFileSync(join(dir.path, 'served', 'pki', 'ca.crt'), 'utf8');
      const health = await fetchHealth(apiPort, ca);
      expect(health).toBe(200);
    } finally {
      await serve.stop();
    }
  });
});

/** GET /healthz over TLS verified with the gateway's CA: the API answers on the file's port. */
async function fetchHealth(port: number, ca: string): Promise<number> {
  const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  await once(socket, 'secureConnect');
  socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  let response = '';
  socket.on('data', (chunk: Buffer) => (response += chunk.toString()));
  await once(socket, 'end');
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
}
