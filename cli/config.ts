import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { packageRoot } from './package-root.ts';
import { defaultFlowControl, type FlowControlConfig, perSourceDefaults } from '../broker/flow-control-config.ts';
import { readConfigFile } from './config-file.ts';
import { envName, flagAttribute, type Setting, type SettingKey, settingKeys, settings, type SettingValues } from './settings.ts';

/**
 * Flags, environment and the config file are read here, once (the settings are listed in cli/settings.ts):
 * validated together (every problem reported at once), then frozen. Everything else receives a config
 * object; tests build one directly.
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

/** Commander's option values (`--mqtt-port` → mqttPort) and `--config`; tests pass the same shape. */
export interface ServeFlags {
  readonly config?: string;
  readonly [attribute: string]: string | undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export type SettingSource = 'flag' | 'env' | 'file' | 'default';

export interface ResolvedSettings {
  readonly values: SettingValues;
  /** Per setting: which layer gave the value and exactly where (`--mqtt-port`, `FLEETGATE_MQTT_PORT`, `fleetgate.yaml:3`). */
  readonly sources: { readonly [K in SettingKey]: { readonly source: SettingSource; readonly from?: string } };
  /** The config file read, if any (`--config` or FLEETGATE_CONFIG). */
  readonly configPath: string | undefined;
}

/** `*_FILE` variables and `<key>File` entries name a file holding a secret (Docker and Kubernetes secrets). */
function readSecretFile(where: string, path: string, problems: string[]): string | undefined {
  try {
    const secret = readFileSync(path, 'utf8').trim();
    if (secret !== '') return secret;
    problems.push(`${where}: ${path} is empty`);
  } catch (error) {
    problems.push(`${where}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return undefined;
}

/**
 * Layers flag > environment > config file > default for every setting of cli/settings.ts. Every value given is
 * validated, even one a higher layer overrides (a broken file is reported before the day the flag goes away);
 * every problem is pushed, none thrown.
 */
export function resolveSettings(flags: ServeFlags, env: NodeJS.ProcessEnv, problems: string[], only: readonly SettingKey[] = settingKeys): ResolvedSettings {
  const configFlag = flags.config === '' ? undefined : flags.config;
  const configPath = configFlag ?? (env.FLEETGATE_CONFIG || undefined);
  const file = configPath === undefined ? undefined : readConfigFile(resolve(configPath), problems);
  const values: Record<string, unknown> = {};
  const sources: Record<string, { source: SettingSource; from?: string }> = {};
  for (const key of only) {
    const definition: Setting<unknown> = settings[key];
    const layers: { source: SettingSource; from: string; raw: () => string | undefined }[] = [];
    const flagValue = definition.flag === undefined ? undefined : flags[flagAttribute(definition.flag)];
    if (definition.flag !== undefined && flagValue !== undefined && flagValue !== '') layers.push({ source: 'flag', from: definition.flag, raw: () => flagValue });
    const variable = envName(key);
    const envValue = env[variable];
    if (envValue !== undefined && envValue !== '') layers.push({ source: 'env', from: variable, raw: () => envValue });
    else if (definition.secret !== undefined && env[`${variable}_FILE`]) {
      const secretPath = env[`${variable}_FILE`] ?? '';
      layers.push({ source: 'env', from: `${variable}_FILE`, raw: () => readSecretFile(`${variable}_FILE`, secretPath, problems) });
    }
    const fileEntry = file?.entries.get(key);
    const fileSecret = definition.secret === undefined ? undefined : file?.entries.get(`${key}File`);
    if (fileEntry !== undefined) layers.push({ source: 'file', from: fileEntry.where, raw: () => fileEntry.raw });
    else if (fileSecret !== undefined && file !== undefined) {
      const secretPath = resolve(dirname(file.path), fileSecret.raw);
      layers.push({ source: 'file', from: fileSecret.where, raw: () => readSecretFile(`${fileSecret.where}: ${key}File`, secretPath, problems) });
    }
    let chosen: { value: unknown; source: SettingSource; from?: string } | undefined;
    for (const layer of layers) {
      const raw = layer.raw();
      if (raw === undefined) continue;
      const parsed = definition.parse(raw);
      if ('problem' in parsed) {
        problems.push(`${layer.source === 'file' ? `${layer.from}: ${key}` : layer.from} ${parsed.problem}`);
        continue;
      }
      const value = definition.path === true && typeof parsed.value === 'string' ? resolve(layer.source === 'file' && file ? dirname(file.path) : '.', parsed.value) : parsed.value;
      chosen ??= { value, source: layer.source, from: layer.from };
    }
    const fallback = definition.path === true && typeof definition.fallback === 'string' ? resolve(definition.fallback) : definition.fallback;
    values[key] = chosen === undefined ? fallback : chosen.value;
    sources[key] = chosen === undefined ? { source: 'default' } : { source: chosen.source, ...(chosen.from === undefined ? {} : { from: chosen.from }) };
  }
  // Defaults computed from the machine or from other settings.
  if (values.hostname === undefined && only.includes('hostname')) values.hostname = osHostname();
  if (only.includes('maxPendingHandshakesPerSource') && only.includes('maxConnectionsPerSource')) {
    const perSource = perSourceDefaults(
      (values.maxPendingHandshakes as number | undefined) ?? defaultFlowControl.maxPendingHandshakes,
      (values.maxConnections as number | undefined) ?? defaultFlowControl.maxConnections,
    );
    values.maxPendingHandshakesPerSource ??= perSource.maxPendingHandshakesPerSource;
    values.maxConnectionsPerSource ??= perSource.maxConnectionsPerSource;
  }
  return { values: values as unknown as SettingValues, sources: sources as ResolvedSettings['sources'], configPath: file?.path };
}

export function resolveDataDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const problems: string[] = [];
  const { values } = resolveSettings(flag === undefined ? {} : { dataDir: flag }, env, problems, ['dataDir']);
  if (problems.length > 0) throw new ConfigError(problems);
  return values.dataDir ?? resolve('data');
}

export function resolveServeConfig(flags: ServeFlags, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const problems: string[] = [];
  const { values } = resolveSettings(flags, env, problems);
  const hostname = values.hostname ?? osHostname();
  // A --workers child names itself after the supervisor's id (passed down in the environment) and its index.
  const worker = env.FLEETGATE_BROKER_WORKER;
  const baseBrokerId = values.brokerId ?? `${hostname.replaceAll(':', '-')}-${worker === undefined ? process.pid : process.ppid}`;
  const brokerId = worker === undefined ? baseBrokerId : `${baseBrokerId}-${worker}`;
  const idCheck = settings.brokerId.parse(brokerId);
  if ('problem' in idCheck) problems.push(`the broker id ${idCheck.problem} (set --broker-id)`);
  if (problems.length > 0) throw new ConfigError(problems);
  /** Settings with a fallback in cli/settings.ts always have a value. */
  const need = <T>(value: T | undefined): T => value as T;
  const metricsPort = values.metricsPort === undefined || values.metricsPort === 0 || worker === undefined ? values.metricsPort : values.metricsPort + Number(worker) - 1;

  const config: ServeConfig = {
    dataDir: need(values.dataDir),
    host: need(values.host),
    mqttPort: need(values.mqttPort),
    apiPort: need(values.apiPort),
    hostname,
    logLevel: need(values.logLevel),
    maxPacketBytes: need(values.maxPacketBytes),
    connectTimeoutMs: need(values.connectTimeoutMs),
    apiRateLimitPerMinute: need(values.apiRateLimitPerMinute),
    enrollRatePerClaim: need(values.enrollRatePerClaim),
    flow: Object.freeze({
      publishPerSecond: need(values.publishRate),
      publishBytesPerSecond: need(values.publishBytesRate),
      outboundQueueMessages: need(values.outboundQueueMessages),
      outboundQueueBytes: need(values.outboundQueueBytes),
      overLimitGraceMs: need(values.overLimitGraceMs),
      maxInflightPublishes: defaultFlowControl.maxInflightPublishes,
      maxConnections: need(values.maxConnections),
      maxPendingHandshakes: need(values.maxPendingHandshakes),
      maxPendingHandshakesPerSource: need(values.maxPendingHandshakesPerSource),
      maxConnectionsPerSource: need(values.maxConnectionsPerSource),
      connectPerSecond: need(values.connectRate),
    }),
    consoleDir: join(packageRoot(), 'console', 'dist'),
    databaseUrl: values.databaseUrl,
    redisUrl: values.redisUrl,
    clusterName: need(values.clusterName),
    brokerId,
    provisioningUrl: values.provisioningUrl,
    brokerToken: values.brokerToken,
    workers: need(values.brokerWorkers),
    metricsPort,
  };
  return Object.freeze(config);
}
