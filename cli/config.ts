import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join, resolve } from 'node:path';
import { packageRoot } from './package-root.ts';
import { defaultBrokerLimits, defaultFlowControl, type FlowControlConfig, perSourceDefaults } from '../broker/index.ts';

/**
 * Flags and environment are read here, once: validated together (every problem reported at once), then
 * frozen. Everything else receives a config object; tests build one directly.
 */
export interface ServeConfig {
  readonly dataDir: string;
  readonly host: string;
  readonly mqttPort: number;
  readonly apiPort: number;
  /** The name devices use to reach the gateway; goes into the server certificate and certificate URLs. */
  readonly hostname: string;
  readonly logLevel: string;
  readonly maxPacketBytes: number;
  readonly connectTimeoutMs: number;
  /** HTTPS requests per minute per client address. */
  readonly apiRateLimitPerMinute: number;
  /** Sustained enrollments per second per claim (burst: twice that). */
  readonly enrollRatePerClaim: number;
  /** Per-device defaults (templates override them) and gateway-wide admission limits. */
  readonly flow: FlowControlConfig;
  /** The bundled web console served at /console: `console/dist` of this package (`npm run build:console`). */
  readonly consoleDir: string;
  /** Scale-out: `postgres://…` moves the registry to PostgreSQL; unset = SQLite in the data directory. */
  readonly databaseUrl: string | undefined;
  /** Scale-out: the Redis that brokers share (pub/sub, sessions, retained messages, events). */
  readonly redisUrl: string | undefined;
  /** Names this installation's keys and channels in Redis, so several can share one server. */
  readonly clusterName: string;
  /** This broker's name in the cluster (aedes id, owner of its session list). */
  readonly brokerId: string;
  /** `fleetgate broker`: where the provisioning API answers the enrollment and renewal requests it relays. */
  readonly provisioningUrl: string | undefined;
  /** `fleetgate broker`: processes sharing the MQTTS port (node:cluster); 1 = this process alone. */
  readonly workers: number;
  /** `fleetgate broker`: plain-HTTP port for /metrics and /healthz; unset = none. */
  readonly metricsPort: number | undefined;
  /** `fleetgate broker`: the token (role broker or admin) it relays with; default: the data dir's admin.token. */
  readonly brokerToken: string | undefined;
}

export interface ServeFlags {
  dataDir?: string;
  host?: string;
  mqttPort?: string;
  apiPort?: string;
  hostname?: string;
  redisUrl?: string;
  databaseUrl?: string;
  provisioningUrl?: string;
  brokerId?: string;
  metricsPort?: string;
  workers?: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function resolveDataDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.FLEETGATE_DATA_DIR ?? 'data');
}

export function resolveServeConfig(flags: ServeFlags, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const problems: string[] = [];
  const port = (name: string, value: string | undefined, fallback: number) => {
    if (value === undefined || value === '') return fallback;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 0 || parsed > 65535) {
      problems.push(`${name} must be a port number 0-65535 (0 picks a free port), got "${value}"`);
      return fallback;
    }
    return parsed;
  };
  const positive = (name: string, value: string | undefined, fallback: number) => {
    if (value === undefined || value === '') return fallback;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0) {
      problems.push(`${name} must be a positive integer, got "${value}"`);
      return fallback;
    }
    return parsed;
  };
  /** `*_FILE` variables name a file holding a secret (Docker and Kubernetes secrets), read once here. */
  const secretFile = (name: string, path: string | undefined) => {
    if (path === undefined || path === '') return undefined;
    try {
      const secret = readFileSync(path, 'utf8').trim();
      if (secret !== '') return secret;
      problems.push(`${name}: ${path} is empty`);
    } catch (error) {
      problems.push(`${name}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    return undefined;
  };
  const hostname = flags.hostname ?? env.FLEETGATE_HOSTNAME ?? osHostname();
  if (!/^[A-Za-z0-9.:-]+$/.test(hostname)) problems.push(`--hostname must be a DNS name or IP address, got "${hostname}"`);
  const logLevel = env.FLEETGATE_LOG_LEVEL ?? 'info';
  if (!logLevels.includes(logLevel)) problems.push(`FLEETGATE_LOG_LEVEL must be one of ${logLevels.join(', ')}, got "${logLevel}"`);

  const url = (name: string, value: string | undefined, protocols: readonly string[]) => {
    if (value === undefined || value === '') return undefined;
    if (!URL.canParse(value) || !protocols.includes(new URL(value).protocol)) {
      problems.push(`${name} must be a ${protocols.map((p) => p + '//').join(' or ')} URL, got "${value.replace(/\/\/[^@/]*@/, '//…@')}"`);
      return undefined;
    }
    return value;
  };
  const name = (what: string, value: string) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)) problems.push(`${what} must be 1-64 letters, digits, '.', '_' or '-', got "${value}"`);
    return value;
  };
  const clusterName = name('FLEETGATE_CLUSTER_NAME', env.FLEETGATE_CLUSTER_NAME ?? 'fleetgate');
  // A --workers child names itself after the supervisor's id (passed down in the environment) and its index.
  const worker = env.FLEETGATE_BROKER_WORKER;
  const baseBrokerId = flags.brokerId ?? env.FLEETGATE_BROKER_ID ?? `${hostname.replaceAll(':', '-')}-${worker === undefined ? process.pid : process.ppid}`;
  const brokerId = name('--broker-id', worker === undefined ? baseBrokerId : `${baseBrokerId}-${worker}`);

  const maxConnections = positive('FLEETGATE_MAX_CONNECTIONS', env.FLEETGATE_MAX_CONNECTIONS, defaultFlowControl.maxConnections);
  const maxPendingHandshakes = positive('FLEETGATE_MAX_PENDING_HANDSHAKES', env.FLEETGATE_MAX_PENDING_HANDSHAKES, defaultFlowControl.maxPendingHandshakes);
  const perSource = perSourceDefaults(maxPendingHandshakes, maxConnections);

  const config: ServeConfig = {
    dataDir: resolveDataDir(flags.dataDir, env),
    host: flags.host ?? env.FLEETGATE_HOST ?? '0.0.0.0',
    mqttPort: port('--mqtt-port', flags.mqttPort ?? env.FLEETGATE_MQTT_PORT, 8883),
    apiPort: port('--api-port', flags.apiPort ?? env.FLEETGATE_API_PORT, 8443),
    hostname,
    logLevel,
    maxPacketBytes: positive('FLEETGATE_MAX_PACKET_BYTES', env.FLEETGATE_MAX_PACKET_BYTES, defaultBrokerLimits.maxPacketBytes),
    connectTimeoutMs: positive('FLEETGATE_CONNECT_TIMEOUT_MS', env.FLEETGATE_CONNECT_TIMEOUT_MS, defaultBrokerLimits.connectTimeoutMs),
    apiRateLimitPerMinute: positive('FLEETGATE_API_RATE_LIMIT_PER_MINUTE', env.FLEETGATE_API_RATE_LIMIT_PER_MINUTE, 6000),
    enrollRatePerClaim: positive('FLEETGATE_ENROLL_RATE_PER_CLAIM', env.FLEETGATE_ENROLL_RATE_PER_CLAIM, 100),
    flow: Object.freeze({
      publishPerSecond: positive('FLEETGATE_PUBLISH_RATE', env.FLEETGATE_PUBLISH_RATE, defaultFlowControl.publishPerSecond),
      publishBytesPerSecond: positive('FLEETGATE_PUBLISH_BYTES_RATE', env.FLEETGATE_PUBLISH_BYTES_RATE, defaultFlowControl.publishBytesPerSecond),
      outboundQueueMessages: positive('FLEETGATE_OUTBOUND_QUEUE_MESSAGES', env.FLEETGATE_OUTBOUND_QUEUE_MESSAGES, defaultFlowControl.outboundQueueMessages),
      outboundQueueBytes: positive('FLEETGATE_OUTBOUND_QUEUE_BYTES', env.FLEETGATE_OUTBOUND_QUEUE_BYTES, defaultFlowControl.outboundQueueBytes),
      overLimitGraceMs: positive('FLEETGATE_OVER_LIMIT_GRACE_MS', env.FLEETGATE_OVER_LIMIT_GRACE_MS, defaultFlowControl.overLimitGraceMs),
      maxInflightPublishes: defaultFlowControl.maxInflightPublishes,
      maxConnections,
      maxPendingHandshakes,
      maxPendingHandshakesPerSource: positive('FLEETGATE_MAX_PENDING_HANDSHAKES_PER_SOURCE', env.FLEETGATE_MAX_PENDING_HANDSHAKES_PER_SOURCE, perSource.maxPendingHandshakesPerSource),
      maxConnectionsPerSource: positive('FLEETGATE_MAX_CONNECTIONS_PER_SOURCE', env.FLEETGATE_MAX_CONNECTIONS_PER_SOURCE, perSource.maxConnectionsPerSource),
      connectPerSecond: positive('FLEETGATE_CONNECT_RATE', env.FLEETGATE_CONNECT_RATE, defaultFlowControl.connectPerSecond),
    }),
    consoleDir: join(packageRoot(), 'console', 'dist'),
    databaseUrl: url('--database-url', flags.databaseUrl ?? env.FLEETGATE_DATABASE_URL, ['postgres:', 'postgresql:']),
    redisUrl: url('--redis-url', flags.redisUrl ?? env.FLEETGATE_REDIS_URL, ['redis:', 'rediss:']),
    clusterName,
    brokerId,
    provisioningUrl: url('--provisioning-url', flags.provisioningUrl ?? env.FLEETGATE_PROVISIONING_URL, ['https:']),
    brokerToken: env.FLEETGATE_BROKER_TOKEN || secretFile('FLEETGATE_BROKER_TOKEN_FILE', env.FLEETGATE_BROKER_TOKEN_FILE),
    workers: positive('--workers', flags.workers ?? env.FLEETGATE_BROKER_WORKERS, 1),
    metricsPort: metricsPortOf(port, flags.metricsPort ?? env.FLEETGATE_METRICS_PORT, worker),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** `--workers` children each listen on their own metrics port: the given one plus (index - 1), or any free one. */
function metricsPortOf(port: (name: string, value: string | undefined, fallback: number) => number, value: string | undefined, worker: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const base = port('--metrics-port', value, 0);
  return base === 0 || worker === undefined ? base : base + Number(worker) - 1;
}
