import { Command, Option } from 'commander';
import { resolveServeConfig, type ServeFlags } from './config.ts';
import { createDevice } from './device-create.ts';
import { openDataDir } from './data-dir.ts';
import { emit, reportError } from './output.ts';
import { registerFactoryCommands } from './factory-commands.ts';
import { registerOperatorCommands } from './operator-commands.ts';
import { registerAuditVerifyCommand, registerTokenCommands } from './token-commands.ts';
import { registerSimCommand } from './sim-command.ts';
import { createLogger, startGateway } from './serve.ts';

const program = new Command('fleetgate')
  .description('Self-hosted IoT trust plane: CA, device provisioning and an mTLS MQTT gateway with per-device topic ACLs.')
  .showHelpAfterError('(run with --help for usage)');

const dataDirOption = () => new Option('--data-dir <dir>', 'data directory (env FLEETGATE_DATA_DIR)').default(undefined, './data');
const jsonOption = () => new Option('--json', 'print one JSON document for scripts');

program
  .command('init')
  .description('create the data directory: root, device and claim CAs, admin token and registry (serve does this on first start)')
  .addOption(dataDirOption())
  .option('--hostname <name>', 'name devices use to reach the gateway (env FLEETGATE_HOSTNAME)')
  .addOption(jsonOption())
  .action(async (options: { dataDir?: string; hostname?: string; json?: boolean }) => {
    const config = resolveServeConfig({ ...(options.dataDir ? { dataDir: options.dataDir } : {}), ...(options.hostname ? { hostname: options.hostname } : {}) });
    const dataDir = await openDataDir({ path: config.dataDir, hostnames: [config.hostname] });
    await dataDir.registry.close();
    emit(Boolean(options.json), { dataDir: dataDir.path, created: dataDir.created }, () =>
      dataDir.created.length === 0
        ? `Data directory ${dataDir.path} already initialised; nothing changed.`
        : `Initialised ${dataDir.path}: created ${dataDir.created.join(', ')}.\nDevices trust ${dataDir.path}/pki/ca.crt; the operator token is in ${dataDir.path}/admin.token.`,
    );
  });

program
  .command('serve')
  .description('run the all-in-one gateway: MQTT broker (mTLS) and HTTPS API')
  .addOption(dataDirOption())
  .option('--host <address>', 'address to listen on (env FLEETGATE_HOST)', undefined)
  .option('--mqtt-port <port>', 'MQTTS port, 0 = any free port (env FLEETGATE_MQTT_PORT)', undefined)
  .option('--api-port <port>', 'HTTPS API port, 0 = any free port (env FLEETGATE_API_PORT)', undefined)
  .option('--hostname <name>', 'name devices use to reach the gateway (env FLEETGATE_HOSTNAME)', undefined)
  .action(async (flags: ServeFlags) => {
    const config = resolveServeConfig(flags);
    const log = createLogger(config.logLevel);
    const gateway = await startGateway(config, log);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      gateway.close().then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    if (gateway.dataDir.created.length > 0) process.stdout.write(`first start: created ${gateway.dataDir.created.join(', ')} in ${gateway.dataDir.path}\n`);
    process.stdout.write(`fleetgate ready mqtt=${gateway.mqttUrl} api=${gateway.apiUrl} data=${gateway.dataDir.path}\n`);
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
