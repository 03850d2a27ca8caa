import { hostname as osHostname } from 'node:os';
import { resolve } from 'node:path';
import { defaultBrokerLimits } from '../broker/index.ts';

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
}

export interface ServeFlags {
  dataDir?: string;
  host?: string;
  mqttPort?: string;
  apiPort?: string;
  hostname?: string;
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
  const hostname = flags.hostname ?? env.FLEETGATE_HOSTNAME ?? osHostname();
  if (!/^[A-Za-z0-9.:-]+$/.test(hostname)) problems.push(`--hostname must be a DNS name or IP address, got "${hostname}"`);
  const logLevel = env.FLEETGATE_LOG_LEVEL ?? 'info';
  if (!logLevels.includes(logLevel)) problems.push(`FLEETGATE_LOG_LEVEL must be one of ${logLevels.join(', ')}, got "${logLevel}"`);

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
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
