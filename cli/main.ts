import { Command, Option } from 'commander';
import type { Logger } from 'pino';
import { resolveServeConfig, type ServeConfig, type ServeFlags } from './config.ts';
import { addSettingOptions, configOption, registerConfigCommand, serverFlags } from './config-command.ts';
import type { ServerCommand } from './settings.ts';
import { createDevice, parseAttributes } from './device-create.ts';
import { operatorClient, type OperatorOptions, withOperatorOptions } from './operator-context.ts';
import { emit, reportError } from './output.ts';
import { registerFactoryCommands } from './factory-commands.ts';
import { registerOperatorCommands } from './operator-commands.ts';
import { registerCheckCommand } from './check-command.ts';
import { registerCaCommands } from './ca-commands.ts';
import { registerAuditVerifyCommand, registerTokenCommands } from './token-commands.ts';
import { registerSimCommand } from './sim-command.ts';
import { registerRotateCommands } from './rotate-commands.ts';
// The servers' modules (broker, provisioning, registry drivers) load only for the command that runs them:
// `fleetgate --version` or an operator command should not pay for aedes, fastify and Kysely at start.
const servers = () => import('./serve.ts');
const scaleOut = () => import('./scale-out.ts');
import { packageVersion } from './package-root.ts';
import { isBrokerWorker, reportWorkerReady, superviseBrokerWorkers } from './broker-workers.ts';

const program = new Command('fleetgate')
  .description('Self-hosted IoT trust plane: CA, device provisioning and an mTLS MQTT gateway with per-device topic ACLs.')
  .version(packageVersion(), '-V, --version', 'print the fleetgate version')
  .showHelpAfterError('(run with --help for usage)');

const jsonOption = () => new Option('--json', 'print one JSON document for scripts');

addSettingOptions(
  program
    .command('init')
    .description('create the data directory: root, device and claim CAs, admin token and registry (serve does this on first start)')
    .addOption(configOption()),
  (key) => key === 'dataDir' || key === 'hostname' || key === 'databaseUrl',
)
  .addOption(jsonOption())
  .option('--key-store <uri>', 'generate the CA keys inside a PKCS#11 token (RFC 7512 URI with module-path; PIN from FLEETGATE_PKCS11_PIN or FLEETGATE_PKCS11_PIN_FILE); default: files in pki/')
  .option('--import-keys-to <uri>', 'move the existing CA key files into a PKCS#11 token, deleting each file after a verified test signature')
  .action(async (options: { dataDir?: string; hostname?: string; databaseUrl?: string; config?: string; json?: boolean; keyStore?: string; importKeysTo?: string }) => {
    const config = resolveServeConfig({
      ...(options.config ? { config: options.config } : {}),
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      ...(options.hostname ? { hostname: options.hostname } : {}),
      ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    });
    const { openDataDir } = await import('./data-dir.ts');
    const dataDir = await openDataDir({ path: config.dataDir, hostnames: [config.hostname], databaseUrl: config.databaseUrl, keyStore: options.keyStore });
    if (options.importKeysTo !== undefined) {
      const { importKeysToToken } = await import('./import-keys.ts');
      try {
        const imported = await importKeysToToken(dataDir, options.importKeysTo);
        emit(Boolean(options.json), { dataDir: dataDir.path, created: dataDir.created, imported }, () =>
          imported.length === 0 ? 'No CA key files to import; nothing changed.' : imported.map((key) => `CA ${key.caId} (${key.role}): ${key.from} -> token, file deleted`).join('\n'),
        );
      } finally {
        await dataDir.keyStores.close();
        await dataDir.registry.close();
      }
      return;
    }
    await dataDir.keyStores.close();
    await dataDir.registry.close();
    if (options.keyStore !== undefined && dataDir.created.length === 0 && !dataDir.pki.keyRefs.root.startsWith('pkcs11:')) {
      const { ConfigError } = await import('./config.ts');
      throw new ConfigError([`${dataDir.path} already has CA keys in files: --key-store only applies to a new data directory; use --import-keys-to to move them into the token (README "CA keys in an HSM")`]);
    }
    emit(Boolean(options.json), { dataDir: dataDir.path, created: dataDir.created }, () =>
      dataDir.created.length === 0
        ? `Data directory ${dataDir.path} already initialised; nothing changed.`
        : `Initialised ${dataDir.path}: created ${dataDir.created.join(', ')}.\nDevices trust ${dataDir.path}/pki/ca.crt; the operator token is in ${dataDir.path}/admin.token.`,
    );
  });

/** The flags of a long-running process, from cli/settings.ts; each also has an FLEETGATE_* variable and a config file key. */
const withServerOptions = (command: Command, name: ServerCommand) => addSettingOptions(command.addOption(configOption()), serverFlags(name));

/** Runs a server until SIGINT/SIGTERM, then closes it cleanly; prints the "fleetgate ready" line scripts wait for. */
async function runServer(flags: ServeFlags, start: (config: ServeConfig, log: Logger) => Promise<{ readyLine: string; firstStart?: string; close(): Promise<void> }>) {
  const config = resolveServeConfig(flags);
  const log = (await servers()).createLogger(config.logLevel);
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

withServerOptions(program.command('serve').description('run the all-in-one gateway: MQTT broker (mTLS) and HTTPS API'), 'serve').action((flags: ServeFlags) =>
  runServer(flags, async (config, log) => {
    const gateway = await (await servers()).startGateway(config, log);
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
  'provisioning',
).action((flags: ServeFlags) => runServer(flags, async (config, log) => (await scaleOut()).startProvisioningProcess(config, log)));

withServerOptions(
  program.command('broker').description('scale-out: run one MQTT broker node of a cluster (needs --redis-url and --provisioning-url; no CA keys)'),
  'broker',
).action(async (flags: ServeFlags) => {
  const config = resolveServeConfig(flags);
  if (config.workers > 1 && !isBrokerWorker()) return superviseBrokerWorkers(config, (await servers()).createLogger(config.logLevel));
  return runServer(flags, async (config, log) => (await scaleOut()).startBrokerProcess(config, log));
});

const device = program.command('device').description('manage devices');
withOperatorOptions(
  device
    .command('create')
    .description('register a device by hand (lab use): make a P-256 key and CSR here, have the API issue its certificate, write device.crt, device.key and ca.crt')
    .requiredOption('--id <id>', 'device id (letters, digits, . _ : -; at most 128)')
    .requiredOption('--out <dir>', 'directory for device.crt, device.key (0600) and ca.crt')
    .option('--template <name>', 'registration template', 'default')
    .option('--policy <name>', 'policy override (default: the template policy)')
    .option('--attribute <name=value...>', 'trusted attribute policies may read, e.g. site=lab (repeatable)'),
).action(async (options: OperatorOptions & { id: string; out: string; template: string; policy?: string; attribute?: string[] }) => {
  const client = operatorClient(options);
  const created = await createDevice(client, {
    id: options.id,
    out: options.out,
    template: options.template,
    ...(options.policy ? { policy: options.policy } : {}),
    attributes: parseAttributes(options.attribute),
  });
  const mqttHost = new URL(client.baseUrl).hostname;
  emit(Boolean(options.json), created, () =>
    [
      `Created device ${created.id} (template ${created.template}, certificate serial ${created.serial}, valid until ${created.notAfter})`,
      `  certificate  ${created.files.certificate}`,
      `  private key  ${created.files.key} (mode 0600)`,
      `  CA           ${created.files.ca}`,
      '',
      'Try it:',
      `  mosquitto_sub --cafile ${created.files.ca} --cert ${created.files.certificate} --key ${created.files.key} -h ${mqttHost} -p 8883 -i ${created.id} -t 'devices/${created.id}/#' -v`,
    ].join('\n'),
  );
});

registerFactoryCommands(program);
const { audit } = registerOperatorCommands(program, { device });
registerAuditVerifyCommand(audit);
registerCheckCommand(program);
registerTokenCommands(program);
registerCaCommands(program);
registerRotateCommands(program);
registerSimCommand(program);
registerConfigCommand(program);

function wantsJson(argv: readonly string[]): boolean {
  return argv.includes('--json');
}

program.parseAsync(process.argv).catch((error: unknown) => {
  process.exitCode = reportError(error, wantsJson(process.argv));
});
