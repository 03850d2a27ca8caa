import { chmodSync, existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { waitUnlessAborted } from './abortable-wait.ts';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { createCsr, generateKeyPair, policyActions, privateKeyToPem } from '../core/index.ts';
import type { AuditEntry, AuditFeed, CreatedService, CreateService, Device, DeviceDetail, DevicePage, Explanation, ExplainRequest, NoteBody, Policy, PolicyList, RevokeBody, SessionList } from '../contract/index.ts';
import { deviceStatuses, identityKinds, listLimit, operatorRevocationReasons, sessionKinds, auditResults } from '../contract/constants.ts';
import { writeSecret } from '../provisioning/pki-store.ts';
import type { ApiClientOptions } from './api-client.ts';
import { callApi, operatorClient, type OperatorOptions, withOperatorOptions } from './operator-context.ts';
import { emit } from './output.ts';
import { formatTable } from './table.ts';

const path = (...parts: string[]) => parts.map(encodeURIComponent).join('/');
const query = (params: Record<string, string | number | undefined>) => {
  const search = new URLSearchParams(Object.entries(params).flatMap(([key, value]) => (value === undefined || value === '' ? [] : [[key, String(value)] as [string, string]])));
  return search.size === 0 ? '' : `?${search.toString()}`;
};
const limitHelp = `at most this many (${listLimit.min}-${listLimit.max})`;
const reasonOption = () => new Option('--reason <reason>', 'RFC 5280 revocation reason').choices(operatorRevocationReasons).makeOptionMandatory();

function identityTable(items: readonly Device[]): string {
  if (items.length === 0) return '(none)';
  return formatTable(
    ['ID', 'KIND', 'STATUS', 'TEMPLATE', 'POLICY', 'REASON', 'UPDATED'],
    items.map((d) => [d.id, d.kind, d.status, d.template, d.policy ?? '(template)', d.statusReason, d.updatedAt]),
  );
}

function moreHint(next: string | null | undefined, command: string): string {
  return next ? `\n(more: ${command} --after ${next})` : '';
}

/** The status line every revoke/suspend/resume prints. */
function statusLine(device: Device, verb: string): string {
  const reason = device.statusReason ? ` (${device.statusReason})` : '';
  return `${device.kind === 'service' ? 'Service' : 'Device'} ${device.id} ${verb}: status ${device.status}${reason}. Live sessions are closed and reconnects refused while it is not active.`;
}

/**
 * Fleet-operator subcommands (README "Commands"): devices, services, policies, sessions and the audit trail,
 * all through the HTTPS API. `device` is the command that already holds `device create`, so the subcommands
 * join it rather than shadow it. Returns the `audit` command so `audit verify` can be added beside it.
 */
export function registerOperatorCommands(program: Command, commands: { device: Command }): { audit: Command } {
  const { device } = commands;

  // ---- device ----------------------------------------------------------------------------------------

  withOperatorOptions(
    device
      .command('list')
      .description('list devices (and services), by id')
      .addOption(new Option('--status <status>', 'only this status').choices(deviceStatuses))
      .addOption(new Option('--kind <kind>', 'only devices or only services').choices(identityKinds))
      .option('--template <name>', 'only devices of this template')
      .option('--prefix <prefix>', 'only ids starting with this')
      .option('--after <id>', 'start after this id (paging)')
      .option('--limit <n>', limitHelp, String(listLimit.default)),
  ).action(async (options: OperatorOptions & { status?: string; kind?: string; template?: string; prefix?: string; after?: string; limit: string }) => {
    const page = await callApi<DevicePage>(
      operatorClient(options),
      'GET',
      `/v1/devices${query({ status: options.status, kind: options.kind, template: options.template, prefix: options.prefix, after: options.after, limit: options.limit })}`,
    );
    emit(Boolean(options.json), page, () => identityTable(page.items) + moreHint(page.next, 'fleetgate device list'));
  });

  withOperatorOptions(device.command('show').description('one device: status, policy, certificates and live session').argument('<id>', 'device id')).action(
    async (id: string, options: OperatorOptions) => {
      const detail = await callApi<DeviceDetail>(operatorClient(options), 'GET', `/v1/devices/${path(id)}`);
      emit(Boolean(options.json), detail, () => deviceDetailText(detail));
    },
  );

  withOperatorOptions(
    device
      .command('revoke')
      .description('revoke a device for good: its certificates are revoked, its live session is closed at once and it can never connect again')
      .argument('<id>', 'device id')
      .addOption(reasonOption()),
  ).action(async (id: string, options: OperatorOptions & { reason: string }) => {
    const revoked = await callApi<Device>(operatorClient(options), 'POST', `/v1/devices/${path(id)}/revoke`, { reason: options.reason } satisfies RevokeBody);
    emit(Boolean(options.json), revoked, () => statusLine(revoked, 'revoked'));
  });

  for (const [action, verb, description] of [
    ['suspend', 'suspended', 'suspend a device: its live session is closed at once and reconnects are refused until it is resumed'],
    ['resume', 'resumed', 'resume a suspended device (a revoked device stays revoked)'],
  ] as const) {
    withOperatorOptions(device.command(action).description(description).argument('<id>', 'device id').option('--reason <text>', 'note for the audit trail')).action(
      async (id: string, options: OperatorOptions & { reason?: string }) => {
        const changed = await callApi<Device>(operatorClient(options), 'POST', `/v1/devices/${path(id)}/${action}`, (options.reason ? { reason: options.reason } : {}) satisfies NoteBody);
        emit(Boolean(options.json), changed, () => statusLine(changed, verb));
      },
    );
  }

  // ---- service ---------------------------------------------------------------------------------------

  const service = program.command('service').description('service identities for backend applications (client id = service name)');
  withOperatorOptions(
    service
      .command('create')
      .description('make a P-256 key here, have the gateway certify it, and write service.crt, service.key and ca.crt')
      .requiredOption('--name <name>', 'service name: its MQTT client id (letters, digits, . _ : -)')
      .option('--policy <name>', 'policy of the service (default: backend, i.e. all of devices/#)')
      .requiredOption('--out <dir>', 'directory for service.crt, service.key (0600) and ca.crt'),
  ).action(async (options: OperatorOptions & { name: string; policy?: string; out: string }) => {
    const client = operatorClient(options);
    const files = { certificate: join(options.out, 'service.crt'), key: join(options.out, 'service.key'), ca: join(options.out, 'ca.crt') };
    const existing = Object.values(files).filter((file) => existsSync(file));
    if (existing.length > 0) throw new Error(`${existing.join(', ')} already exist; choose an empty --out directory`);
    // The key never leaves this machine. It is written before the call, so a directory we cannot write to
    // fails before anything is registered, and removed if the gateway refuses.
    const keys = await generateKeyPair();
    mkdirSync(options.out, { recursive: true });
    writeSecret(files.key, await privateKeyToPem(keys.privateKey));
    chmodSync(files.key, 0o600); // in case a umask or an odd filesystem widened it
    let created: CreatedService;
    try {
      created = await callApi(client, 'POST', '/v1/services', { name: options.name, csr: await createCsr(keys, options.name), ...(options.policy ? { policy: options.policy } : {}) } satisfies CreateService);
    } catch (error) {
      unlinkSync(files.key);
      throw error;
    }
    writeFileSync(files.certificate, created.certificate + created.chain, { mode: 0o644 });
    writeFileSync(files.ca, created.ca, { mode: 0o644 });
    const summary = { name: created.name, policy: created.policy, serial: created.serial, notAfter: created.notAfter, files };
    const mqttHost = new URL(client.baseUrl).hostname;
    emit(Boolean(options.json), summary, () =>
      [
        `Created service ${created.name} (policy ${created.policy ?? 'backend'}, certificate serial ${created.serial}, valid until ${created.notAfter})`,
        `  certificate  ${files.certificate}`,
        `  private key  ${files.key} (mode 0600)`,
        `  CA           ${files.ca}`,
        '',
        'Try it (client id = service name):',
        `  mosquitto_sub --cafile ${files.ca} --cert ${files.certificate} --key ${files.key} -h ${mqttHost} -p 8883 -i ${created.name} -t 'devices/+/telemetry' -v`,
      ].join('\n'),
    );
  });

  withOperatorOptions(
    service
      .command('list')
      .description('list service identities')
      .addOption(new Option('--status <status>', 'only this status').choices(deviceStatuses))
      .option('--after <name>', 'start after this name (paging)')
      .option('--limit <n>', limitHelp, String(listLimit.default)),
  ).action(async (options: OperatorOptions & { status?: string; after?: string; limit: string }) => {
    const page = await callApi<DevicePage>(operatorClient(options), 'GET', `/v1/services${query({ status: options.status, after: options.after, limit: options.limit })}`);
    emit(Boolean(options.json), page, () => identityTable(page.items) + moreHint(page.next, 'fleetgate service list'));
  });

  withOperatorOptions(
    service
      .command('revoke')
      .description('revoke a service identity for good: its live session is closed at once and it can never connect again')
      .argument('<name>', 'service name')
      .addOption(reasonOption()),
  ).action(async (name: string, options: OperatorOptions & { reason: string }) => {
    const client = operatorClient(options);
    // Services and devices share one namespace and one revoke route; make sure a typo cannot revoke a device.
    const { device: found } = await callApi<DeviceDetail>(client, 'GET', `/v1/devices/${path(name)}`);
    if (found.kind !== 'service') throw new Error(`${name} is a device, not a service; use \`fleetgate device revoke\` if that is what you mean`);
    const revoked = await callApi<Device>(client, 'POST', `/v1/devices/${path(name)}/revoke`, { reason: options.reason } satisfies RevokeBody);
    emit(Boolean(options.json), revoked, () => statusLine(revoked, 'revoked'));
  });

  // ---- policy ----------------------------------------------------------------------------------------

  const policy = program.command('policy').description('topic ACL policies');
  withOperatorOptions(policy.command('list').description('list policies')).action(async (options: OperatorOptions) => {
    const policies = await callApi<PolicyList>(operatorClient(options), 'GET', '/v1/policies');
    emit(Boolean(options.json), policies, () =>
      formatTable(
        ['NAME', 'VERSION', 'STATEMENTS', 'UPDATED'],
        policies.items.map((p) => [p.name, p.version, p.document.statements.length, p.updatedAt]),
      ),
    );
  });

  withOperatorOptions(
    policy.command('get').description('print a policy document (edit it and load it back with `policy set`)').argument('<name>', 'policy name'),
  ).action(async (name: string, options: OperatorOptions) => {
    const found = await callApi<Policy>(operatorClient(options), 'GET', `/v1/policies/${path(name)}`);
    // Text mode prints exactly the document, so `policy get P > p.json` round-trips; the version goes to stderr.
    if (!options.json) process.stderr.write(`# policy ${found.name}, version ${found.version}, updated ${found.updatedAt}\n`);
    emit(Boolean(options.json), found, () => JSON.stringify(found.document, null, 2));
  });

  withOperatorOptions(
    policy
      .command('set')
      .description('create or replace a policy from a JSON file {"statements": [...]}; connected devices get it at once')
      .argument('<name>', 'policy name')
      .requiredOption('--file <file>', 'JSON policy document ("-" for stdin)'),
  ).action(async (name: string, options: OperatorOptions & { file: string }) => {
    const document = readPolicyFile(options.file);
    const saved = await callApi<Policy>(operatorClient(options), 'PUT', `/v1/policies/${path(name)}`, document);
    emit(Boolean(options.json), saved, () => `Saved policy ${saved.name} version ${saved.version} (${saved.document.statements.length} statements); brokers apply it to live sessions now.`);
  });

  withOperatorOptions(
    policy
      .command('explain')
      .description('would this device be allowed to publish/subscribe/receive on this topic, and which statement decides?')
      .requiredOption('--device <id>', 'device id whose variables (${device.id}, attributes, …) are used')
      .addOption(new Option('--action <action>', 'MQTT action').choices(policyActions).makeOptionMandatory())
      .requiredOption('--topic <topic>', 'topic name, or topic filter for subscribe')
      .option('--policy <name>', 'explain this policy instead of the device\'s own (e.g. a draft)'),
  ).action(async (options: OperatorOptions & { device: string; action: ExplainRequest['action']; topic: string; policy?: string }) => {
    const client = operatorClient(options);
    const policyName = options.policy ?? (await callApi<DeviceDetail>(client, 'GET', `/v1/devices/${path(options.device)}`)).effectivePolicy;
    if (policyName === null) throw new Error(`device ${options.device} has no effective policy (its template is gone); pass --policy NAME`);
    const answer = await callApi<Explanation>(client, 'POST', `/v1/policies/${path(policyName)}/explain`, { deviceId: options.device, action: options.action, topic: options.topic } satisfies ExplainRequest);
    emit(Boolean(options.json), answer, () => explainText(answer));
  });

  // ---- session ---------------------------------------------------------------------------------------

  const session = program.command('session').description('live MQTT sessions');
  withOperatorOptions(
    session
      .command('list')
      .description('list live sessions on the broker(s) the API runs with')
      .addOption(new Option('--kind <kind>', 'only device or only claim (enrollment) sessions').choices(sessionKinds)),
  ).action(async (options: OperatorOptions & { kind?: string }) => {
    const sessions = await callApi<SessionList>(operatorClient(options), 'GET', `/v1/sessions${query({ kind: options.kind })}`);
    emit(Boolean(options.json), sessions, () =>
      sessions.items.length === 0
        ? '(no live sessions)'
        : formatTable(
            ['CLIENT ID', 'KIND', 'CERTIFICATE SERIAL', 'REMOTE', 'CONNECTED'],
            sessions.items.map((s) => [s.clientId, s.kind, s.certificateSerial, s.remoteAddress, s.connectedAt]),
          ),
    );
  });

  // ---- audit -----------------------------------------------------------------------------------------

  const audit = withOperatorOptions(
    program
      .command('audit')
      .description('read the audit trail, newest last; --follow keeps printing new entries until Ctrl-C')
      .option('--device <id>', 'entries about this device')
      .option('--actor <actor>', 'entries by this actor (e.g. operator:admin, device:ID)')
      .option('--action <action>', 'entries of this action (e.g. device.revoke, mqtt.connect)')
      .addOption(new Option('--result <result>', 'only successes or only refusals').choices(auditResults))
      .option('--since <time>', 'ISO 8601 time, inclusive')
      .option('--until <time>', 'ISO 8601 time, exclusive')
      .option('--limit <n>', `how many of the latest entries (${listLimit.min}-${listLimit.max})`, '50')
      .option('--follow', 'poll for new entries every second (with --json: one JSON object per line)'),
  ).action(async (options: OperatorOptions & { device?: string; actor?: string; action?: string; result?: string; since?: string; until?: string; limit: string; follow?: boolean }) => {
    const client = operatorClient(options);
    const filters = { deviceId: options.device, actor: options.actor, action: options.action, result: options.result, since: isoTime(options.since, '--since'), until: isoTime(options.until, '--until') };
    // The API answers newest first; a log reads oldest first.
    const latest = (await callApi<AuditFeed>(client, 'GET', `/v1/audit${query({ ...filters, limit: options.limit })}`)).items.reverse();
    if (!options.follow) {
      emit(Boolean(options.json), latest, () => (latest.length === 0 ? '(no entries)' : auditTable(latest)));
      return;
    }
    // Ctrl-C ends a follow normally (exit 0): it is how one stops watching, not a failure.
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await followAudit(client, filters, latest, Boolean(options.json), controller.signal);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  });

  return { audit };
}

function deviceDetailText(detail: DeviceDetail): string {
  const { device, session, certificates } = detail;
  const pairs = (values: Record<string, string>) => Object.entries(values).map(([key, value]) => `${key}=${value}`).join(', ');
  const attributes = pairs(device.attributes);
  const reported = pairs(device.reportedAttributes ?? {});
  const lines = [
    `${device.kind === 'service' ? 'Service' : 'Device'} ${device.id}: ${device.status}${device.statusReason ? ` (${device.statusReason})` : ''}`,
    `  template    ${device.template}`,
    `  policy      ${detail.effectivePolicy ?? '(missing)'}${device.policy === null ? ' (from the template)' : ' (override)'}`,
    ...(attributes ? [`  attributes  ${attributes}`] : []),
    // Never read by a policy: only what the device said about itself when it enrolled.
    ...(reported ? [`  reported    ${reported}`] : []),
    `  created     ${device.createdAt}`,
    `  updated     ${device.updatedAt}`,
    `  session     ${session ? `connected since ${session.connectedAt} from ${session.remoteAddress ?? '?'} (certificate ${session.certificateSerial})` : 'not connected'}`,
    '',
    'Certificates:',
    certificates.length === 0
      ? '  (none)'
      : formatTable(
          ['SERIAL', 'STATUS', 'NOT BEFORE', 'NOT AFTER', 'REVOKED', 'REASON'],
          certificates.map((c) => [c.serial, c.status, c.notBefore, c.notAfter, c.revokedAt, c.revocationReason]),
        ),
  ];
  return lines.join('\n');
}

function explainText(answer: Explanation): string {
  const verdict = answer.allowed ? 'ALLOWED' : `DENIED (${answer.code ?? 'no code'})`;
  const lines = [`${verdict}: ${answer.deviceId} ${answer.action} ${answer.topic}`, `  policy     ${answer.policy} version ${answer.version}`];
  if (answer.statement !== null && answer.statementIndex !== null) {
    const sid = answer.statement.sid ? ` "${answer.statement.sid}"` : '';
    lines.push(`  decided by statement ${answer.statementIndex}${sid}: ${answer.statement.effect} ${answer.statement.actions.join(',')} on ${answer.statement.topics.join(' ')}`);
    lines.push(`  matching   ${answer.pattern ?? '?'}`);
  } else if (answer.effect === 'no-match') {
    lines.push('  no statement matches, so it is denied (no match means deny)');
  } else {
    lines.push('  decided by the gateway before any policy ("$"-topics are reserved; invalid topics are refused)');
  }
  if (answer.effectivePolicy !== answer.policy) lines.push(`  note: ${answer.deviceId} actually gets policy ${answer.effectivePolicy ?? '(none)'}`);
  if (answer.deviceStatus !== 'active') lines.push(`  note: ${answer.deviceId} is ${answer.deviceStatus} and cannot connect at all`);
  return lines.join('\n');
}

const auditHeaders = ['ID', 'AT', 'ACTOR', 'ACTION', 'RESULT', 'DEVICE', 'DETAIL'] as const;
const auditRow = (e: AuditEntry) => [e.id, e.at, e.actor, e.action, e.result === 'ok' ? 'ok' : `refused ${e.code ?? ''}`.trim(), e.deviceId, summariseDetail(e.detail)];

function auditTable(entries: readonly AuditEntry[]): string {
  return formatTable(auditHeaders, entries.map(auditRow));
}

/**
 * Lines for a stream of entries: a table cannot be sized before its rows exist, so columns start at a
 * typical width and only ever grow; earlier lines are not re-aligned.
 */
function auditStream(): (entries: readonly AuditEntry[]) => string {
  const widths = [6, 24, 16, 16, 8, 16, 0];
  let headerShown = false;
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => {
        widths[column] = Math.max(widths[column] ?? 0, cell.length);
        return cell.padEnd(widths[column] ?? 0);
      })
      .join('  ')
      .trimEnd();
  return (entries) => {
    const lines = entries.map((entry) => line(auditRow(entry).map((cell) => (cell === null || cell === undefined || cell === '' ? '-' : String(cell)))));
    if (!headerShown) lines.unshift(line(auditHeaders));
    headerShown = true;
    return lines.join('\n');
  };
}

function summariseDetail(detail: Record<string, unknown> | null): string {
  if (detail === null) return '';
  const text = Object.entries(detail)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ');
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** Prints `initial`, then polls with afterId every second until `signal` aborts. */
export async function followAudit(
  client: ApiClientOptions,
  filters: Record<string, string | undefined>,
  initial: readonly AuditEntry[],
  json: boolean,
  signal: AbortSignal,
  intervalMs = 1000,
): Promise<void> {
  const table = auditStream();
  const print = (entries: readonly AuditEntry[]) => {
    if (entries.length === 0) return;
    process.stdout.write((json ? entries.map((e) => JSON.stringify(e)).join('\n') : table(entries)) + '\n');
  };
  print(initial);
  let afterId = initial.at(-1)?.id ?? (await latestId(client));
  while (!signal.aborted) {
    // `since`/`until` bound the first read only; following is by id, oldest first.
    const { items } = await callApi<AuditFeed>(client, 'GET', `/v1/audit${query({ ...filters, since: undefined, until: undefined, afterId, limit: listLimit.max })}`);
    print(items);
    afterId = items.at(-1)?.id ?? afterId;
    if (items.length === listLimit.max) continue; // behind: catch up without waiting
    await waitUnlessAborted(intervalMs, signal);
  }
}

/** The newest entry's id, so a follow that printed nothing starts from now rather than from the beginning. */
async function latestId(client: ApiClientOptions): Promise<number> {
  const { items } = await callApi<AuditFeed>(client, 'GET', '/v1/audit?limit=1');
  return items[0]?.id ?? 0;
}

function isoTime(value: string | undefined, flag: string): string | undefined {
  if (value === undefined) return undefined;
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) throw new Error(`${flag} must be an ISO 8601 time such as 2030-01-31T12:00:00Z`);
  return time.toISOString();
}

function readPolicyFile(file: string): unknown {
  const text = readFileSync(file === '-' ? 0 : file, 'utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file} is not JSON (${(error as Error).message}); expected {"statements": [...]}`, { cause: error });
  }
  // Accept what `policy get --json` prints, so a document can be fetched, edited and set back either way.
  if (typeof value === 'object' && value !== null && 'document' in value && 'name' in value) return (value as { document: unknown }).document;
  return value;
}
