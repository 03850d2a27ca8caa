import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { createProgressBar, type FleetSummary, formatFleetSummary, runFleet } from '../device-sim/index.ts';
import { ConfigError } from './config.ts';

/** Where the command writes; tests pass their own streams instead of the process's. */
export interface SimIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  setExitCode(code: number): void;
  /** A signal that ends the run early (the process: SIGINT/SIGTERM); `release` once the run is over. */
  interrupts(): { readonly signal: AbortSignal; release(): void };
}

interface SimFlags {
  claimDir?: string;
  claimCert?: string;
  claimKey?: string;
  ca?: string;
  mqtt: string;
  count: string;
  concurrency: string;
  serialPrefix: string;
  telemetryInterval: string;
  duration: string;
  renewAfter?: string;
  json?: boolean;
}

export interface SimSettings {
  readonly mqttUrl: string;
  readonly claim: { readonly cert: string; readonly key: string };
  readonly ca: string;
  readonly count: number;
  readonly concurrency: number;
  readonly serialPrefix: string;
  readonly telemetryIntervalMs: number;
  readonly durationMs: number;
  readonly renewAfterMs: number | undefined;
}

/** `fleetgate sim`: a fleet of simulated devices enrolls with a claim certificate and lives for a while. */
export function registerSimCommand(program: Command, io: SimIo = processIo()): Command {
  return program
    .command('sim')
    .description('simulate a fleet over MQTT: each device enrolls with the claim certificate, connects with its own, publishes telemetry and renews; exits 1 if any device failed')
    .option('--claim-dir <dir>', 'directory with claim.crt, claim.key and ca.crt (as written by `claim create --out`)')
    .option('--claim-cert <file>', 'claim certificate PEM (overrides the one in --claim-dir)')
    .option('--claim-key <file>', 'claim private key PEM (overrides the one in --claim-dir)')
    .option('--ca <file>', 'root CA PEM the gateway certificate chains to (overrides the one in --claim-dir)')
    .option('--mqtt <url>', 'gateway MQTTS address', 'mqtts://localhost:8883')
    .option('--count <n>', 'devices to simulate', '1')
    .option('--concurrency <n>', 'devices enrolling at the same time', '50')
    .option('--serial-prefix <prefix>', 'device serials are this prefix plus a number: sim-0001, sim-0002 … (a serial enrolls once per key: change the prefix between runs)', 'sim-')
    .option('--telemetry-interval <duration>', 'telemetry period per device, e.g. 500ms, 5s; 0 = none', '5s')
    .option('--duration <duration>', 'how long the fleet lives once every device has enrolled; 0 = until Ctrl-C', '30s')
    .option('--renew-after <duration>', 'renew this long after each new certificate instead of when a third of its lifetime is left')
    .addOption(new Option('--json', 'print one JSON document for scripts'))
    .action(async (flags: SimFlags) => {
      const settings = resolveSimSettings(flags);
      const json = Boolean(flags.json);
      const progress = !json && io.stderr.isTTY === true ? createProgressBar(io.stderr) : undefined;
      const interrupts = io.interrupts();
      let summary: FleetSummary;
      try {
        summary = await runFleet({
          count: settings.count,
          concurrency: settings.concurrency,
          serialPrefix: settings.serialPrefix,
          durationMs: settings.durationMs,
          device: {
            target: { url: settings.mqttUrl, ca: settings.ca },
            claim: settings.claim,
            telemetryIntervalMs: settings.telemetryIntervalMs,
            ...(settings.renewAfterMs === undefined ? {} : { renewal: { afterMs: settings.renewAfterMs } }),
          },
          signal: interrupts.signal,
          ...(progress ? { onProgress: (p) => progress.update(p) } : {}),
        });
      } finally {
        interrupts.release();
        progress?.finish();
      }
      const { claim: _claim, ca: _ca, ...shown } = settings;
      io.stdout.write(json ? JSON.stringify({ settings: shown, ...summary }, null, 2) + '\n' : formatFleetSummary(summary) + '\n');
      if (summary.failed > 0) io.setExitCode(1);
    });
}

/** Every flag checked together, so one run reports every problem at once (exit 2, like other commands). */
export function resolveSimSettings(flags: SimFlags): SimSettings {
  const problems: string[] = [];
  const integer = (name: string, text: string, min: number) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) problems.push(`${name} must be an integer ≥ ${min}, got "${text}"`);
    return value;
  };
  const duration = (name: string, text: string) => {
    const value = parseDurationMs(text);
    if (value === undefined) problems.push(`${name} must be a duration such as 500ms, 5s, 2m or 1h (0 allowed), got "${text}"`);
    return value ?? 0;
  };
  const noCredential = flags.claimDir === undefined && flags.claimCert === undefined && flags.claimKey === undefined && flags.ca === undefined;
  if (noCredential) problems.push('the claim credential is required: --claim-dir DIR (with claim.crt, claim.key and ca.crt), or --claim-cert, --claim-key and --ca');
  const file = (name: string, path: string | undefined) => {
    if (path === undefined) {
      if (!noCredential) problems.push(`${name} is required when --claim-dir is not given`);
      return '';
    }
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      problems.push(`${name}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
      return '';
    }
  };
  const inDir = (name: string) => (flags.claimDir === undefined ? undefined : join(flags.claimDir, name));

  const claimCert = file('--claim-cert', flags.claimCert ?? inDir('claim.crt'));
  const claimKey = file('--claim-key', flags.claimKey ?? inDir('claim.key'));
  const ca = file('--ca', flags.ca ?? inDir('ca.crt'));
  if (claimCert && !claimCert.includes('BEGIN CERTIFICATE')) problems.push('--claim-cert does not contain a PEM certificate');
  if (claimKey && !claimKey.includes('PRIVATE KEY')) problems.push('--claim-key does not contain a PEM private key');
  if (ca && !ca.includes('BEGIN CERTIFICATE')) problems.push('--ca does not contain a PEM certificate');

  let mqttUrl = flags.mqtt;
  try {
    const url = new URL(flags.mqtt);
    if (url.protocol !== 'mqtts:') problems.push(`--mqtt must be an mqtts:// URL (the gateway speaks MQTT over TLS only), got "${flags.mqtt}"`);
    if (url.port === '') url.port = '8883';
    mqttUrl = url.toString().replace(/\/$/, '');
  } catch {
    problems.push(`--mqtt must be a URL such as mqtts://localhost:8883, got "${flags.mqtt}"`);
  }
  const count = integer('--count', flags.count, 1);
  const concurrency = integer('--concurrency', flags.concurrency, 1);
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,100}$/.test(flags.serialPrefix)) {
    problems.push(`--serial-prefix must start with a letter or digit and use only letters, digits, . _ : - (it becomes part of the device id), got "${flags.serialPrefix}"`);
  }
  const telemetryIntervalMs = duration('--telemetry-interval', flags.telemetryInterval);
  const durationMs = duration('--duration', flags.duration);
  const renewAfterMs = flags.renewAfter === undefined ? undefined : duration('--renew-after', flags.renewAfter);
  if (renewAfterMs === 0) problems.push('--renew-after must be longer than 0');

  if (problems.length > 0) throw new ConfigError(problems);
  return { mqttUrl, claim: { cert: claimCert, key: claimKey }, ca, count, concurrency, serialPrefix: flags.serialPrefix, telemetryIntervalMs, durationMs, renewAfterMs };
}

/** "500ms", "5s", "2m", "1h", "1.5s"; a bare number is seconds. undefined when it is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(match[1]) * unit);
}

/**
 * The real process: Ctrl-C (or SIGTERM) ends the run gracefully, with a summary; a second one exits at once.
 * The listeners live only while a run does, so nothing else loses Node's default signal behaviour.
 */
function processIo(): SimIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    setExitCode: (code) => (process.exitCode = code),
    interrupts() {
      const controller = new AbortController();
      const onSignal = () => {
        if (controller.signal.aborted) process.exit(130);
        controller.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      return {
        signal: controller.signal,
        release() {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        },
      };
    },
  };
}
