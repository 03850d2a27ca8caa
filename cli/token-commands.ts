import { chmodSync, existsSync, mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Command, Option } from 'commander';
import { createCsr, generateKeyPair, privateKeyToPem } from '../core/index.ts';
import type { AuditVerification, CreatedToken, CreateOperatorCertificate, CreateToken, OperatorCertificate, RotatedAdminToken, Token, TokenList, OperatorRole } from '../contract/index.ts';
import { operatorRoles } from '../contract/constants.ts';
import { resolveDataDir } from './config.ts';
import { callApi, operatorClient, type OperatorOptions, withOperatorOptions } from './operator-context.ts';
import { emit } from './output.ts';
import { formatTable } from './table.ts';

/** Personal operator tokens: one per person or script, each with a role, revocable on its own. */
export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('personal operator tokens with roles (admin, operator, station, viewer)');

  withOperatorOptions(
    token
      .command('create')
      .description('create a token; it is printed once and cannot be shown again')
      .requiredOption('--name <name>', 'who or what uses it, e.g. alice or ci-deploy (letters, digits, . _ -)')
      .addOption(
        new Option('--role <role>', 'admin: everything; operator: revoke/suspend/resume and read; station: claims and allow-lists; viewer: read')
          .choices(operatorRoles)
          .makeOptionMandatory(),
      ),
  ).action(async (options: OperatorOptions & { name: string; role: OperatorRole }) => {
    const created = await callApi<CreatedToken>(operatorClient(options), 'POST', '/v1/tokens', { name: options.name, role: options.role } satisfies CreateToken);
    emit(Boolean(options.json), created, () =>
      [
        `Created token ${created.name} with role ${created.role}:`,
        '',
        `  ${created.token}`,
        '',
        'This is the only time it is shown: put it in a password manager or secret store now. fleetgate keeps',
        'only its hash. Use it as FLEETGATE_TOKEN=<token>; revoke it with `fleetgate token revoke ' + created.name + '`.',
      ].join('\n'),
    );
  });

  withOperatorOptions(
    token
      .command('create-cert')
      .description('make a P-256 key here and have the gateway issue an operator certificate for the admin API (mTLS instead of a token)')
      .requiredOption('--name <name>', 'who uses it, e.g. alice (letters, digits, . _ -); revoke with `fleetgate token revoke <name>`')
      .addOption(
        new Option('--role <role>', 'admin: everything; operator: revoke/suspend/resume and read; station: claims and allow-lists; viewer: read')
          .choices(operatorRoles)
          .makeOptionMandatory(),
      )
      .requiredOption('--out <dir>', 'directory for operator.crt, operator.key (0600) and ca.crt'),
  ).action(async (options: OperatorOptions & { name: string; role: OperatorRole; out: string }) => {
    const client = operatorClient(options);
    const files = { certificate: join(options.out, 'operator.crt'), key: join(options.out, 'operator.key'), ca: join(options.out, 'ca.crt') };
    const existing = Object.values(files).filter((file) => existsSync(file));
    if (existing.length > 0) throw new Error(`${existing.join(', ')} already exist; choose an empty --out directory`);
    // The key never leaves this machine; written first so an unwritable directory fails before anything is issued.
    const keys = await generateKeyPair();
    mkdirSync(options.out, { recursive: true });
    writeFileSync(files.key, await privateKeyToPem(keys.privateKey), { flag: 'wx', mode: 0o600 });
    chmodSync(files.key, 0o600); // in case a umask or an odd filesystem widened it
    let created: OperatorCertificate;
    try {
      created = await callApi(client, 'POST', '/v1/operators/certificates', { name: options.name, role: options.role, csr: await createCsr(keys, options.name) } satisfies CreateOperatorCertificate);
    } catch (error) {
      unlinkSync(files.key);
      throw error;
    }
    writeFileSync(files.certificate, created.certificate + created.chain, { flag: 'wx', mode: 0o644 });
    // The root the API was just verified with.
    writeFileSync(files.ca, client.ca, { flag: 'wx', mode: 0o644 });
    emit(Boolean(options.json), { name: created.name, role: created.role, files }, () =>
      [
        `Created operator certificate ${created.name} with role ${created.role}:`,
        `  certificate  ${files.certificate}`,
        `  private key  ${files.key} (mode 0600)`,
        `  CA           ${files.ca}`,
        '',
        'Use it instead of a token (no Authorization header), e.g.:',
        `  curl --cert ${files.certificate} --key ${files.key} --cacert ${files.ca} ${client.baseUrl}/v1/devices`,
        `Revoke it with \`fleetgate token revoke ${created.name}\`.`,
      ].join('\n'),
    );
  });

  withOperatorOptions(
    token
      .command('rotate-admin')
      .description('replace the bootstrap admin token: every API process refuses the old one at once; the new one is written to admin.token (0600)')
      .option('--out <file>', 'where to write the new token (default <data-dir>/admin.token, replaced atomically)'),
  ).action(async (options: OperatorOptions & { out?: string }) => {
    const client = operatorClient(options);
    const file = options.out ?? join(resolveDataDir(options.dataDir), 'admin.token');
    const rotated = await callApi<RotatedAdminToken>(client, 'POST', '/v1/tokens/admin/rotate');
    try {
      writeTokenFile(file, rotated.token);
    } catch (error) {
      // The old token no longer works: losing the new one here would leave only personal tokens.
      process.stderr.write(`Could not write ${file} (${(error as Error).message}). The new bootstrap token is:\n\n  ${rotated.token}\n\nStore it now; it is not shown again.\n`);
      throw error;
    }
    const summary = { name: rotated.name, rotatedAt: rotated.rotatedAt, retired: rotated.retired, file };
    emit(Boolean(options.json), summary, () =>
      [
        `Rotated the bootstrap admin token at ${rotated.rotatedAt}; the new one is in ${file} (mode 0600).`,
        'Every API process sharing this registry refuses the old token from now on; no restart is needed.',
        'Copy the new admin.token to the other hosts that keep a copy of the data directory, and give brokers that',
        'relayed with the old one a broker token of their own (`fleetgate token create --role broker`).',
      ].join('\n'),
    );
  });

  withOperatorOptions(token.command('list').description('tokens and their roles (never the tokens themselves)')).action(async (options: OperatorOptions) => {
    const { items } = await callApi<TokenList>(operatorClient(options), 'GET', '/v1/tokens');
    emit(Boolean(options.json), items, () =>
      items.length === 0
        ? '(no personal tokens; only the bootstrap token in admin.token)'
        : formatTable(['NAME', 'ROLE', 'CREATED', 'REVOKED'], items.map((t) => [t.name, t.role, t.createdAt, t.revokedAt])),
    );
  });

  withOperatorOptions(token.command('revoke').description('revoke a token at once; requests with it are refused from now on').argument('<name>', 'token name')).action(
    async (name: string, options: OperatorOptions) => {
      const revoked = await callApi<Token>(operatorClient(options), 'POST', `/v1/tokens/${encodeURIComponent(name)}/revoke`);
      emit(Boolean(options.json), revoked, () => `Revoked token ${revoked.name} (role ${revoked.role}) at ${revoked.revokedAt ?? '?'}.`);
    },
  );
}

/**
 * Adds `verify` to the `audit` command (cli/operator-commands.ts), or to any command given. Exit code 1
 * when the chain is broken, so a cron job or CI step fails loudly.
 */
export function registerAuditVerifyCommand(audit: Command): void {
  withOperatorOptions(
    audit
      .command('verify')
      .description('check the audit hash chain from the first entry to the last; exit code 1 if it is broken')
      .option('--anchor <id:hash>', 'a head printed by an earlier verify: also proves the log was not rewritten since'),
  ).action(async (_options: OperatorOptions & { anchor?: string }, command: Command) => {
    const options = inheritedOptions(command) as OperatorOptions & { anchor?: string };
    if (options.anchor !== undefined && !/^[1-9][0-9]{0,15}:[0-9a-f]{64}$/.test(options.anchor)) throw new Error('--anchor must be ID:HASH as printed by `fleetgate audit verify`');
    const path = options.anchor === undefined ? '/v1/audit/verify' : `/v1/audit/verify?anchor=${encodeURIComponent(options.anchor)}`;
    const verdict = await callApi<AuditVerification>(operatorClient(options), 'GET', path);
    emit(Boolean(options.json), verdict, () => verificationText(verdict));
    if (!verdict.ok) process.exitCode = 1;
  });
}

/**
 * The parent `audit` has the same --api/--data-dir/--ca/--json options, and commander gives an option to
 * the parent when both know it (`audit verify --json` sets the parent's --json). Take a value from
 * wherever it was set, this command's own first.
 */
function inheritedOptions(command: Command): OperatorOptions {
  const defined = (values: Record<string, unknown>) => Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
  return { ...defined(command.parent?.opts() ?? {}), ...defined(command.opts()) } as OperatorOptions;
}

function verificationText(verdict: AuditVerification): string {
  const head = verdict.head ? `${verdict.head.id}:${verdict.head.hash}` : undefined;
  if (verdict.ok) {
    return [
      `Audit trail intact: ${verdict.entries} entries, every hash link verified.`,
      // Whoever can write the database can rebuild a consistent chain; a head kept elsewhere exposes that.
      ...(head ? [`Head: ${head}`, 'Keep it outside this system; `fleetgate audit verify --anchor <head>` later proves the log was not rewritten.'] : []),
    ].join('\n');
  }
  return [
    `AUDIT TRAIL BROKEN at entry ${verdict.firstBrokenId ?? '?'}: ${verdict.reason ?? 'unknown reason'}.`,
    `${verdict.entries} entries before it verified intact${head ? ` (last intact: ${head})` : ''}.`,
    'Entries from the break on cannot be trusted. Copy the database file for investigation before changing anything.',
  ].join('\n');
}

/** Replaces `file` atomically: a 0600 file beside it, then a rename, so no reader ever sees half a token. */
function writeTokenFile(file: string, token: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, token + '\n', { flag: 'wx', mode: 0o600 });
  try {
    chmodSync(temporary, 0o600); // in case a umask or an odd filesystem widened it
    renameSync(temporary, file);
  } catch (error) {
    unlinkSync(temporary);
    throw error;
  }
}
