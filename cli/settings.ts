// From the file itself, not broker/index.ts: reading settings must not load aedes (startup, tests).
import { defaultBrokerLimits, defaultFlowControl } from '../broker/flow-control-config.ts';

/**
 * Every server setting, listed once. A setting's key is its name in the config file (`--config`, README
 * "Configuration file"); its environment variable is FLEETGATE_ + the key in SCREAMING_SNAKE_CASE
 * (`mqttPort` → FLEETGATE_MQTT_PORT); some also have a flag. cli/config.ts layers flag > env > file >
 * default from this table, `fleetgate config print` lists it, and the README configuration table is
 * rendered from it (test/docs/config-table.test.ts keeps them equal).
 */

/** A parser answers the value, or the end of a sentence that starts with where the value came from. */
export type Parsed<T> = { readonly value: T } | { readonly problem: string };

export type ServerCommand = 'serve' | 'provisioning' | 'broker';

export interface Setting<T> {
  /** The command-line flag, if the setting has one. */
  readonly flag?: `--${string}`;
  /** Placeholder in `--help` (`--mqtt-port <port>`). */
  readonly arg?: string;
  /** The server commands that take the flag; all of them when absent. */
  readonly commands?: readonly ServerCommand[];
  readonly parse: (raw: string) => Parsed<T>;
  /** The default; undefined = unset, or computed from other settings (see defaultText). */
  readonly fallback?: T;
  /** The README's default column when the default is not just `fallback`. */
  readonly defaultText?: string;
  /** What it is, for `--help` and the README. */
  readonly help: string;
  /**
   * Redacted by `config print` (URLs keep everything but the password). A secret can also be given as a file
   * that holds it — FLEETGATE_<NAME>_FILE, or `<key>File` in the config file — as Docker and Kubernetes mount
   * secrets.
   */
  readonly secret?: 'token' | 'url';
  /** A relative path in the config file is relative to the file's directory, not to the working directory. */
  readonly path?: boolean;
}

const port = (raw: string): Parsed<number> => {
  const parsed = Number(raw);
  return Number.isInteger(parsed) && parsed >= 0 && parsed <= 65535 && raw.trim() !== '' ? { value: parsed } : { problem: `must be a port number 0-65535 (0 picks a free port), got "${raw}"` };
};

const positive = (raw: string): Parsed<number> => {
  const parsed = Number(raw);
  return Number.isInteger(parsed) && parsed > 0 ? { value: parsed } : { problem: `must be a positive integer, got "${raw}"` };
};

const text = (raw: string): Parsed<string> => ({ value: raw });

const hostname = (raw: string): Parsed<string> => (/^[A-Za-z0-9.:-]+$/.test(raw) ? { value: raw } : { problem: `must be a DNS name or IP address, got "${raw}"` });

const name = (raw: string): Parsed<string> =>
  /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(raw) ? { value: raw } : { problem: `must be 1-64 letters, digits, '.', '_' or '-', got "${raw}"` };

const oneOf =
  <const V extends string>(values: readonly V[]) =>
  (raw: string): Parsed<V> =>
    (values as readonly string[]).includes(raw) ? { value: raw as V } : { problem: `must be one of ${values.join(', ')}, got "${raw}"` };

/** A URL's password never reaches a message or `config print`. */
export function withoutPassword(url: string): string {
  // Unparseable: everything between "//" and the last "@" may be credentials (a password may contain "/").
  if (!URL.canParse(url)) return url.replace(/\/\/.*@/, '//…@');
  const parsed = new URL(url);
  if (parsed.password === '') return url;
  parsed.password = '***';
  return parsed.toString();
}

const url =
  (...protocols: readonly string[]) =>
  (raw: string): Parsed<string> =>
    URL.canParse(raw) && protocols.includes(new URL(raw).protocol)
      ? { value: raw }
      : { problem: `must be a ${protocols.map((p) => p + '//').join(' or ')} URL, got "${withoutPassword(raw)}"` };

const setting = <T>(definition: Setting<T>): Setting<T> => definition;

export const settings = {
  dataDir: setting({ flag: '--data-dir', arg: 'dir', parse: text, fallback: 'data', defaultText: '`./data`', path: true, help: 'data directory: PKI, admin token, SQLite registry' }),
  host: setting({ flag: '--host', arg: 'address', parse: text, fallback: '0.0.0.0', help: 'address to listen on (all interfaces by default: devices connect from the network, and only mTLS gets in)' }),
  mqttPort: setting({ flag: '--mqtt-port', arg: 'port', commands: ['serve', 'broker'], parse: port, fallback: 8883, help: 'MQTTS port, 0 = any free port' }),
  apiPort: setting({ flag: '--api-port', arg: 'port', commands: ['serve', 'provisioning'], parse: port, fallback: 8443, help: 'HTTPS API port, 0 = any free port' }),
  hostname: setting({ flag: '--hostname', arg: 'name', parse: hostname, defaultText: "the machine's host name", help: 'name devices use to reach the gateway (put in the server certificate and the CRL/OCSP URLs)' }),
  databaseUrl: setting({
    flag: '--database-url',
    arg: 'url',
    parse: url('postgres:', 'postgresql:'),
    secret: 'url',
    defaultText: 'unset: SQLite in the data directory',
    help: '`postgres://user@host:5432/db[?schema=S]`: the registry in PostgreSQL instead of SQLite in the data dir',
  }),
  redisUrl: setting({
    flag: '--redis-url',
    arg: 'url',
    parse: url('redis:', 'rediss:'),
    secret: 'url',
    defaultText: 'unset: one process, state in memory',
    help: '`redis://host:6379[/db]` shared by a cluster of brokers',
  }),
  clusterName: setting({ parse: name, fallback: 'fleetgate', help: "prefix of this installation's Redis channel and session keys" }),
  brokerId: setting({
    flag: '--broker-id',
    arg: 'name',
    commands: ['broker'],
    parse: name,
    defaultText: '`<hostname>-<pid>`',
    help: "`broker` only: this node's name in the cluster and in `session list`",
  }),
  brokerWorkers: setting({
    flag: '--workers',
    arg: 'n',
    commands: ['broker'],
    parse: positive,
    fallback: 1,
    help: '`broker` only: processes sharing the MQTTS port, e.g. one per core, named `<broker-id>-1…N`; metrics ports P, P+1, …',
  }),
  metricsPort: setting({
    flag: '--metrics-port',
    arg: 'port',
    commands: ['broker'],
    parse: port,
    defaultText: 'none',
    help: '`broker` only: plain HTTP `GET /metrics` and `GET /healthz`, 503 while the broker refuses sessions',
  }),
  provisioningUrl: setting({
    flag: '--provisioning-url',
    arg: 'url',
    commands: ['broker'],
    parse: url('https:'),
    defaultText: 'none',
    help: '`broker` only: the HTTPS API that answers relayed enrollment and renewal',
  }),
  brokerToken: setting({
    parse: text,
    secret: 'token',
    defaultText: 'none, required by `broker`',
    help: 'its own token of role `broker` for the relay (`fleetgate token create --role broker --name broker-a`); never the admin token',
  }),
  logLevel: setting({ parse: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), fallback: 'info', help: 'JSON logs on stderr; stdout carries only the ready line' }),
  maxPacketBytes: setting({ parse: positive, fallback: defaultBrokerLimits.maxPacketBytes, help: 'largest MQTT packet accepted' }),
  connectTimeoutMs: setting({ parse: positive, fallback: defaultBrokerLimits.connectTimeoutMs, help: 'from the TCP connection to an admitted MQTT session' }),
  apiRateLimitPerMinute: setting({ parse: positive, fallback: 6000, help: 'HTTPS requests per minute per client address' }),
  enrollRatePerClaim: setting({ parse: positive, fallback: 100, help: 'sustained enrollments per second per claim (burst twice that)' }),
  publishRate: setting({ parse: positive, fallback: defaultFlowControl.publishPerSecond, help: 'PUBLISH packets per second per device; templates override it' }),
  publishBytesRate: setting({ parse: positive, fallback: defaultFlowControl.publishBytesPerSecond, help: 'payload bytes per second per device; templates override it' }),
  outboundQueueMessages: setting({ parse: positive, fallback: defaultFlowControl.outboundQueueMessages, help: 'messages queued towards one subscriber; templates override it' }),
  outboundQueueBytes: setting({ parse: positive, fallback: defaultFlowControl.outboundQueueBytes, help: 'bytes queued towards one subscriber; templates override it' }),
  overLimitGraceMs: setting({ parse: positive, fallback: defaultFlowControl.overLimitGraceMs, help: 'how long a session may stay over a limit before it is closed' }),
  maxConnections: setting({ parse: positive, fallback: defaultFlowControl.maxConnections, help: 'per broker process' }),
  maxPendingHandshakes: setting({ parse: positive, fallback: defaultFlowControl.maxPendingHandshakes, help: 'TLS handshakes in progress at once, per broker process' }),
  maxPendingHandshakesPerSource: setting({
    parse: positive,
    defaultText: `an eighth of \`maxPendingHandshakes\` (\`${defaultFlowControl.maxPendingHandshakesPerSource}\`)`,
    help: 'from one IPv4 address or IPv6 /64',
  }),
  maxConnectionsPerSource: setting({
    parse: positive,
    defaultText: `a tenth of \`maxConnections\` (\`${defaultFlowControl.maxConnectionsPerSource}\`)`,
    help: 'from one IPv4 address or IPv6 /64, sessions included',
  }),
  connectRate: setting({ parse: positive, fallback: defaultFlowControl.connectPerSecond, help: 'sessions admitted per second, burst twice that, per broker process' }),
};

export type SettingKey = keyof typeof settings;
export type SettingValues = { readonly [K in SettingKey]: (typeof settings)[K] extends Setting<infer T> ? T | undefined : never };

export const settingKeys = Object.keys(settings) as SettingKey[];

export function envName(key: string): string {
  return 'FLEETGATE_' + key.replace(/[A-Z]/g, (letter) => '_' + letter).toUpperCase();
}

/** The property commander gives a flag's value (`--mqtt-port` → mqttPort). */
export function flagAttribute(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** The README's default column. */
export function defaultText(key: SettingKey): string {
  const definition: Setting<unknown> = settings[key];
  return definition.defaultText ?? `\`${String(definition.fallback)}\``;
}

/** The README configuration table, one row per setting (test/docs/config-table.test.ts compares). */
export function settingsMarkdownTable(): string {
  const rows = settingKeys.map((key) => {
    const definition: Setting<unknown> = settings[key];
    const secret = definition.secret !== undefined;
    const fileKey = secret ? `\`${key}\` or \`${key}File\`` : `\`${key}\``;
    const variable = secret ? `\`${envName(key)}\` or \`${envName(key)}_FILE\`` : `\`${envName(key)}\``;
    const flag = definition.flag === undefined ? '' : `\`${definition.flag}\``;
    return `| ${fileKey} | ${flag} | ${variable} | ${defaultText(key)} | ${definition.help} |`;
  });
  return ['| file key | flag | environment | default | what it is |', '|---|---|---|---|---|', ...rows].join('\n');
}
