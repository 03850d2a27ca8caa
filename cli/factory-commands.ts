import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { AllowlistBody, AllowlistImport, Claim, ClaimPage, CreateClaim, CreatedClaim, PutTemplate, RegisterClaimIssuer, Template, TemplatePage } from '../contract/index.ts';
import { listLimit } from '../contract/constants.ts';
import { FleetgateError } from '../core/index.ts';
import { lifetimeFromText } from '../provisioning/create-claim.ts';
import { callApi, operatorClient, type OperatorOptions, withOperatorOptions } from './operator-context.ts';
import { emit } from './output.ts';
import { formatTable } from './table.ts';

interface PageOptions {
  after?: string;
  limit: string;
}
const pageOptions = (command: Command, key: string) =>
  command.option('--after <key>', `start after this ${key} (paging)`).option('--limit <n>', `at most this many (${listLimit.min}-${listLimit.max})`, String(listLimit.default));
const pageQuery = (options: PageOptions) => {
  const search = new URLSearchParams({ ...(options.after ? { after: options.after } : {}), limit: options.limit });
  return `?${search.toString()}`;
};
const moreHint = (next: string | null, command: string) => (next ? `\n(more: ${command} --after ${next})` : '');

/** `--publish-rate 50` sets a limit, `--publish-rate default` removes it (the gateway default applies). */
function limitOption(name: string, value: string | undefined): Record<string, number | null> {
  if (value === undefined) return {};
  if (value === 'default') return { [name]: null };
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new FleetgateError('REQUEST_INVALID', { message: `${name} must be a positive integer or "default", got "${value}".` });
  return { [name]: parsed };
}

const limitText = (limits: Template['limits']) =>
  [
    limits?.publishPerSecond !== undefined ? `${limits.publishPerSecond} msg/s` : '',
    limits?.publishBytesPerSecond !== undefined ? `${limits.publishBytesPerSecond} B/s` : '',
    limits?.outboundQueueMessages !== undefined ? `queue ${limits.outboundQueueMessages} msgs` : '',
    limits?.outboundQueueBytes !== undefined ? `queue ${limits.outboundQueueBytes} B` : '',
  ]
    .filter(Boolean)
    .join(', ') || 'defaults';

/** Factory-station work: claim credentials for a batch, templates, serial allow-lists. */
export function registerFactoryCommands(program: Command): void {
  const claim = program.command('claim').description('claim credentials for factory batches');
  withOperatorOptions(
    claim
      .command('create')
      .description('issue a claim certificate + key for a batch; devices use it once to enroll and get their own identity')
      .requiredOption('--template <name>', 'registration template the devices enroll under')
      .option('--max-uses <n>', 'enrollments allowed with this claim (default unlimited)')
      .option('--expires <duration>', 'claim lifetime, e.g. 12h or 30d', '30d')
      .requiredOption('--out <dir>', 'directory for claim.crt, claim.key (0600) and ca.crt'),
  ).action(async (options: OperatorOptions & { template: string; maxUses?: string; expires: string; out: string }) => {
    const files = { certificate: join(options.out, 'claim.crt'), key: join(options.out, 'claim.key'), ca: join(options.out, 'ca.crt') };
    const existing = Object.values(files).filter((path) => existsSync(path));
    if (existing.length > 0) throw new Error(`${existing.join(', ')} already exist; choose an empty --out directory`);
    const maxUses = options.maxUses === undefined ? undefined : Number(options.maxUses);
    if (maxUses !== undefined && (!Number.isInteger(maxUses) || maxUses < 1)) throw new Error('--max-uses must be a positive integer');
    const created = await callApi<CreatedClaim>(operatorClient(options), 'POST', '/v1/claims', {
      template: options.template,
      ...(maxUses ? { maxUses } : {}),
      expiresInSeconds: lifetimeFromText(options.expires),
    } satisfies CreateClaim);
    mkdirSync(options.out, { recursive: true });
    writeFileSync(files.key, created.privateKey, { flag: 'wx', mode: 0o600 });
    writeFileSync(files.certificate, created.certificate, { flag: 'wx', mode: 0o644 });
    writeFileSync(files.ca, created.ca, { flag: 'wx', mode: 0o644 });
    const summary = { claimId: created.claimId, template: created.template, maxUses: created.maxUses, expiresAt: created.expiresAt, files };
    emit(Boolean(options.json), summary, () =>
      [
        `Created claim ${created.claimId} for template ${created.template} (max uses ${created.maxUses ?? 'unlimited'}, expires ${created.expiresAt})`,
        `  certificate  ${files.certificate}`,
        `  private key  ${files.key} (mode 0600; burn into the batch firmware, never into logs)`,
        `  CA           ${files.ca}`,
        '',
        `Devices enroll by connecting with it (client id = their serial) and publishing a CSR to $fleetgate/enroll/<serial>/request,`,
        `or try a simulated one: fleetgate sim --claim-dir ${options.out} --count 1`,
      ].join('\n'),
    );
  });

  withOperatorOptions(pageOptions(claim.command('list').description('claims with their usage and limits, oldest first'), 'claim id')).action(async (options: OperatorOptions & PageOptions) => {
    const claims = await callApi<ClaimPage>(operatorClient(options), 'GET', `/v1/claims${pageQuery(options)}`);
    emit(Boolean(options.json), claims, () =>
      formatTable(['CLAIM', 'KIND', 'TEMPLATE', 'USES', 'STATUS', 'EXPIRES'], claims.items.map((c) => [c.claimId, c.kind, c.template, `${c.uses}/${c.maxUses ?? '∞'}`, c.status, c.expiresAt])) +
        moreHint(claims.next, 'fleetgate claim list'),
    );
  });
  withOperatorOptions(claim.command('revoke').description('stop further enrollments with a claim (enrolled devices keep their identity)').argument('<claim-id>')).action(
    async (claimId: string, options: OperatorOptions) => {
      const revoked = await callApi<Claim>(operatorClient(options), 'POST', `/v1/claims/${encodeURIComponent(claimId)}/revoke`);
      emit(Boolean(options.json), revoked, () => `Revoked claim ${revoked.claimId} (${revoked.uses} devices had enrolled with it).`);
    },
  );
  withOperatorOptions(
    claim
      .command('register-issuer')
      .description("trust a manufacturer CA: its birth certificates enroll the serial in their CN (client id = that serial)")
      .requiredOption('--name <name>', 'issuer name; the claim id becomes mfr-<name>')
      .requiredOption('--template <name>', 'template the devices enroll under')
      .requiredOption('--issuer-cert <file>', 'PEM: the CA that signs birth certificates, then its chain up to the root'),
  ).action(async (options: OperatorOptions & { name: string; template: string; issuerCert: string }) => {
    const certificate = readFileSync(options.issuerCert, 'utf8');
    const registered = await callApi<Claim>(operatorClient(options), 'POST', '/v1/claim-issuers', { name: options.name, template: options.template, certificate } satisfies RegisterClaimIssuer);
    emit(Boolean(options.json), registered, () => `Registered manufacturer CA as claim ${registered.claimId} (trusted until ${registered.expiresAt}).`);
  });

  const template = program.command('template').description('registration templates (policy, validity, key rules, allow-list)');
  withOperatorOptions(pageOptions(template.command('list').description('list templates, by name'), 'name')).action(async (options: OperatorOptions & PageOptions) => {
    const templates = await callApi<TemplatePage>(operatorClient(options), 'GET', `/v1/templates${pageQuery(options)}`);
    emit(Boolean(options.json), templates, () =>
      formatTable(
        ['NAME', 'POLICY', 'VALIDITY', 'ALLOW-LIST', 'RE-ENROLL', 'RENEW EXPIRED', 'KEY TYPES', 'LIMITS'],
        templates.items.map((t) => [t.name, t.policy, `${t.validityDays}d`, t.requireAllowlist ? 'required' : 'no', t.allowReenroll ? 'allowed' : 'no', t.renewAfterExpiryDays > 0 ? `${t.renewAfterExpiryDays}d` : 'no', t.keyTypes.join(', '), limitText(t.limits)]),
      ) + moreHint(templates.next, 'fleetgate template list'),
    );
  });
  withOperatorOptions(
    template
      .command('set')
      .description('create or change a template (unset options keep their current value, or the default template\'s)')
      .requiredOption('--name <name>', 'template name')
      .option('--policy <name>', 'policy devices of this template get')
      .option('--validity-days <n>', 'certificate lifetime in days')
      .option('--key-types <list>', 'comma-separated, e.g. "EC P-256,EC P-384"')
      .option('--require-allowlist', 'only serials on the allow-list may enroll')
      .option('--no-require-allowlist', 'any serial may enroll')
      .option('--allow-reenroll', 'a known serial may enroll again with a new key (factory reset)')
      .option('--no-allow-reenroll', 'a known serial with a new key is refused as a possible clone')
      .option('--renew-after-expiry-days <n>', 'days after expiry during which a certificate may still renew once over HTTPS or EST (0: never)')
      .option('--publish-rate <n>', 'PUBLISH packets per second a device may send ("default": the gateway default)')
      .option('--publish-bytes-rate <n>', 'payload bytes per second a device may publish ("default": the gateway default)')
      .option('--queue-messages <n>', 'messages queued towards one subscriber before QoS 0 is dropped ("default": the gateway default)')
      .option('--queue-bytes <n>', 'bytes queued towards one subscriber before QoS 0 is dropped ("default": the gateway default)'),
  ).action(async (options: OperatorOptions & { name: string; policy?: string; validityDays?: string; keyTypes?: string; requireAllowlist?: boolean; allowReenroll?: boolean; renewAfterExpiryDays?: string; publishRate?: string; publishBytesRate?: string; queueMessages?: string; queueBytes?: string }) => {
    const limits = {
      ...limitOption('publishPerSecond', options.publishRate),
      ...limitOption('publishBytesPerSecond', options.publishBytesRate),
      ...limitOption('outboundQueueMessages', options.queueMessages),
      ...limitOption('outboundQueueBytes', options.queueBytes),
    };
    const saved = await callApi<Template>(operatorClient(options), 'POST', '/v1/templates', {
      name: options.name,
      ...(options.policy ? { policy: options.policy } : {}),
      ...(options.validityDays ? { validityDays: Number(options.validityDays) } : {}),
      ...(options.keyTypes ? { keyTypes: options.keyTypes.split(',').map((k) => k.trim()) } : {}),
      ...(options.requireAllowlist === undefined ? {} : { requireAllowlist: options.requireAllowlist }),
      ...(options.allowReenroll === undefined ? {} : { allowReenroll: options.allowReenroll }),
      ...(options.renewAfterExpiryDays === undefined ? {} : { renewAfterExpiryDays: Number(options.renewAfterExpiryDays) }),
      ...(Object.keys(limits).length > 0 ? { limits } : {}),
    } satisfies PutTemplate);
    emit(
      Boolean(options.json),
      saved,
      () => `Saved template ${saved.name}: policy ${saved.policy}, ${saved.validityDays} days, allow-list ${saved.requireAllowlist ? 'required' : 'not required'}, renewal after expiry ${saved.renewAfterExpiryDays > 0 ? `within ${saved.renewAfterExpiryDays} days` : 'never'}, limits: ${limitText(saved.limits)}.`,
    );
  });

  const allowlist = program.command('allowlist').description('device serial allow-lists');
  withOperatorOptions(
    allowlist
      .command('import')
      .description(
        'add serial numbers (CSV: serial in the first column, one per line, # comments skipped; a header "serial,NAME,…" makes the other columns ' +
          'attributes the device gets at enrollment; or a JSON array of serials or {"serial", "attributes"} objects)',
      )
      .requiredOption('--template <name>', 'template whose allow-list to extend')
      .argument('<file>', 'CSV, plain list of serials, or JSON array'),
  ).action(async (file: string, options: OperatorOptions & { template: string }) => {
    const serials = parseAllowlist(readFileSync(file, 'utf8'));
    const client = operatorClient(options);
    const batch = 10_000;
    let result = { added: 0, total: 0 };
    for (let offset = 0; offset < serials.length; offset += batch) {
      const part = await callApi<AllowlistImport>(client, 'POST', `/v1/templates/${encodeURIComponent(options.template)}/allowlist`, { serials: serials.slice(offset, offset + batch) } satisfies AllowlistBody);
      result = { added: result.added + part.added, total: part.total };
      if (!options.json && serials.length > batch && process.stderr.isTTY) process.stderr.write(`\r  ${Math.min(offset + batch, serials.length)}/${serials.length} serials sent`);
    }
    if (!options.json && serials.length > batch && process.stderr.isTTY) process.stderr.write('\n');
    emit(Boolean(options.json), { template: options.template, read: serials.length, ...result }, () =>
      `Read ${serials.length} serials from ${file}: ${result.added} new, ${result.total} on the ${options.template} allow-list now.`,
    );
  });
}

/**
 * Allow-list entries from a file. A JSON array is sent as it is. Otherwise CSV (`,`, `;` or tab): the serial
 * is the first column; a first line whose first cell is `serial` is a header, and its further cells name
 * attributes, which every row then carries (empty cells left out) and which policies trust (README
 * "Enrollment and renewal"). Without such a header, further columns are ignored.
 */
/** One entry of an allow-list import (contract/admin.ts AllowlistBody). */
type AllowlistEntry = AllowlistBody['serials'][number];

export function parseAllowlist(text: string): AllowlistEntry[] {
  if (text.trimStart().startsWith('[')) return JSON.parse(text) as AllowlistEntry[];
  const cells = (line: string) => line.split(/[,;\t]/).map((cell) => cell.trim().replace(/^"(.*)"$/, '$1'));
  const entries: AllowlistEntry[] = [];
  let names: string[] | undefined;
  text.split(/\r?\n/).forEach((line, index) => {
    const [serial = '', ...rest] = cells(line);
    if (serial === '' || serial.startsWith('#')) return;
    if (index === 0 && /^serial(_?number)?$/i.test(serial)) {
      names = rest;
      return;
    }
    if (names === undefined || names.every((name) => name === '')) return void entries.push(serial);
    const attributes = Object.fromEntries(names.flatMap((name, column) => (name !== '' && rest[column] ? [[name, rest[column]]] : [])));
    entries.push({ serial, attributes });
  });
  return entries;
}
