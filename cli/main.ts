import { Command, Option } from 'commander';
import type { Logger } from 'pino';
import { resolveServeConfig, type ServeConfig, type ServeFlags } from './config.ts';
import { createDevice } from './device-create.ts';
import { openDataDir } from './data-dir.ts';
import { emit, reportError } from './output.ts';
import { registerFactoryCommands } from './factory-commands.ts';
import { registerOperatorCommands } from './operator-commands.ts';
import { registerAuditVerifyCommand, registerTokenCommands } from './token-commands.ts';
import { registerSimCommand } from './sim-command.ts';
import { createLogger, startGateway } from './serve.ts';
import { startBrokerProcess, startProvisioningProcess } from './scale-out.ts';
import { packageVersion } from './package-root.ts';
import { isBrokerWorker, reportWorkerReady, superviseBrokerWorkers } from './broker-workers.ts';

const program = new Command('fleetgate')
  .description('Self-hosted IoT trust plane: CA, device provisioning and an mTLS MQTT gateway with per-device topic ACLs.')
  .version(packageVersion(), '-V, --version', 'print the fleetgate version')
  .showHelpAfterError('(run with --help for usage)');

const dataDirOption = () => new Option('--data-dir <dir>', 'data directory (env FLEETGATE_DATA_DIR)').default(undefined, './data');
const jsonOption = () => new Option('--json', 'print one JSON document for scripts');

program
  .command('init')
  .description('create the data directory: root, device and claim CAs, admin token and registry (serve does this on first start)')
  .addOption(dataDirOption())
  .option('--hostname <name>', 'name devices use to reach the gateway (env FLEETGATE_HOSTNAME)')
  .option('--database-url <url>', 'postgres://… registry instead of SQLite in the data dir (env FLEETGATE_DATABASE_URL)')
  .addOption(jsonOption())
  .action(async (options: { dataDir?: string; hostname?: string; databaseUrl?: string; json?: boolean }) => {
    const config = resolveServeConfig({
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      ...(options.hostname ? { hostname: options.hostname } : {}),
      ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    });
    const dataDir = await openDataDir({ path: config.dataDir, hostnames: [config.hostname], databaseUrl: config.databaseUrl });
    await dataDir.registry.close();
    emit(Boolean(options.json), { dataDir: dataDir.path, created: dataDir.created }, () =>
      dataDir.created.length === 0
        ? `Data directory ${dataDir.path} already initialised; nothing changed.`
        : `Initialised ${dataDir.path}: created ${dataDir.created.join(', ')}.\nDevices trust ${dataDir.path}/pki/ca.crt; the operator token is in ${dataDir.path}/admin.token.`,
    );
  });

/** Flags every long-running process shares; each also has an FLEETGATE_* environment variable. */
const withServerOptions = (command: Command, ports: { mqtt: boolean; api: boolean }) => {
  command
    .addOption(dataDirOption())
    .option('--host <address>', 'address to listen on (env FLEETGATE_HOST)', undefined)
    .option('--hostname <name>', 'name devices use to reach the gateway (env FLEETGATE_HOSTNAME)', undefined)
    .option('--database-url <url>', 'postgres://… registry instead of SQLite in the data dir (env FLEETGATE_DATABASE_URL)', undefined)
    .option('--redis-url <url>', 'redis://… shared by a cluster of brokers (env FLEETGATE_REDIS_URL)', undefined);
  if (ports.mqtt) command.option('--mqtt-port <port>', 'MQTTS port, 0 = any free port (env FLEETGATE_MQTT_PORT)', undefined);
  if (ports.api) command.option('--api-port <port>', 'HTTPS API port, 0 = any free port (env FLEETGATE_API_PORT)', undefined);
  return command;
};

/** Runs a server until SIGINT/SIGTERM, then closes it cleanly; prints the "fleetgate ready" line scripts wait for. */
async function runServer(flags: ServeFlags, start: (config: ServeConfig, log: Logger) => Promise<{ readyLine: string; firstStart?: string; close(): Promise<void> }>) {
  const config = resolveServeConfig(flags);
  const log = createLogger(config.logLevel);
  const server = await start(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  if (server.firstStart) process.stdout.write(server.firstStart);
  if (isBrokerWorker()) reportWorkerReady(server.readyLine);
  else process.stdout.write(`fleetgate ready ${server.readyLine}\n`);
}

withServerOptions(program.command('serve').description('run the all-in-one gateway: MQTT broker (mTLS) and HTTPS API'), { mqtt: true, api: true }).action((flags: ServeFlags) =>
  runServer(flags, async (config, log) => {
    const gateway = await startGateway(config, log);
    const { created, path } = gateway.dataDir;
    return {
      readyLine: `mqtt=${gateway.mqttUrl} api=${gateway.apiUrl} data=${path}`,
      ...(created.length > 0 ? { firstStart: `first start: created ${created.join(', ')} in ${path}\n` } : {}),
      close: () => gateway.close(),
    };
  }),
);

withServerOptions(
  program.command('provisioning').description('scale-out: run only the CA and HTTPS API (enrollment, EST, admin); brokers run as `fleetgate broker`'),
  { mqtt: false, api: true },
).action((flags: ServeFlags) => runServer(flags, startProvisioningProcess));

withServerOptions(
  program
    .command('broker')
    .description('scale-out: run one MQTT broker node of a cluster (needs --redis-url and --provisioning-url; no CA keys)')
    .option('--provisioning-url <url>', 'HTTPS API that answers enrollment and renewal (env FLEETGATE_PROVISIONING_URL)', undefined)
    .option('--broker-id <name>', "this node's name in the cluster (env FLEETGATE_BROKER_ID; default host-pid)", undefined)
    .option('--metrics-port <port>', 'plain-HTTP /metrics and /healthz (503 while cut off from Redis) (env FLEETGATE_METRICS_PORT)', undefined)
    .option('--workers <n>', 'broker processes sharing the MQTTS port, e.g. one per core (env FLEETGATE_BROKER_WORKERS)', undefined),
  { mqtt: true, api: false },
).action(async (flags: ServeFlags) => {
  const config = resolveServeConfig(flags);
  if (config.workers > 1 && !isBrokerWorker()) return superviseBrokerWorkers(config, createLogger(config.logLevel));
  return runServer(flags, startBrokerProcess);
});

const device = program.command('device').description('manage devices');
device
  .command('create')
  .description('register a device by hand (lab use): make a P-256 key and CSR here, issue its certificate, write device.crt, device.key and ca.crt')
  .requiredOption('--id <id>', 'device id (letters, digits, . _ : -; at most 128)')
  .requiredOption('--out <dir>', 'directory for device.crt, device.key (0600) and ca.crt')
  .option('--template <name>', 'registration template', 'default')
  .addOption(dataDirOption())
  .option('--api <url>', 'public API base URL written into the certificate for CRL/OCSP', undefined)
  .addOption(jsonOption())
  .action(async (options: { id: string; out: string; template: string; dataDir?: string; api?: string; json?: boolean }) => {
    const config = resolveServeConfig({ ...(options.dataDir ? { dataDir: options.dataDir } : {}) });
    const created = await createDevice({
      id: options.id,
      out: options.out,
      dataDir: config.dataDir,
      template: options.template,
      apiBaseUrl: options.api ?? `https://${config.hostname}:${config.apiPort}`,
    });
    emit(Boolean(options.json), created, () =>
      [
        `Created device ${created.id} (certificate serial ${created.serial}, valid until ${created.notAfter})`,
        `  certificate  ${created.files.certificate}`,
        `  private key  ${created.files.key} (mode 0600)`,
        `  CA           ${created.files.ca}`,
        '',
        'Try it:',
        `  mosquitto_sub --cafile ${created.files.ca} --cert ${created.files.certificate} --key ${created.files.key} -h localhost -p ${config.mqttPort} -i ${created.id} -t 'devices/${created.id}/#' -v`,
      ].join('\n'),
    );
  });

registerFactoryCommands(program);
const { audit } = registerOperatorCommands(program, { device });
registerAuditVerifyCommand(audit);
registerTokenCommands(program);
registerSimCommand(program);

function wantsJson(argv: readonly string[]): boolean {
  return argv.includes('--json');
}

program.parseAsync(process.argv).catch((error: unknown) => {
  process.exitCode = reportError(error, wantsJson(process.argv));
});
