import Database from 'better-sqlite3';
import type { Statement } from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  assertAttributes,
  assertDeviceId,
  assertEnrollment,
  type Clock,
  FleetgateError,
  parsePolicyDocument,
  type PolicyDocument,
  systemClock,
  type TemplateLimits,
} from '../../core/index.ts';
import type {
  Admission,
  AllowlistEntry,
  AuditAnchor,
  AuditEntry,
  AuditInput,
  AuditQuery,
  AuditVerification,
  CertificateRecord,
  CertificateStatus,
  ClaimRecord,
  ClaimStatus,
  DeviceQuery,
  DeviceRecord,
  DeviceStatus,
  IdentityKind,
  NewCertificate,
  NewClaim,
  NewDevice,
  NewTemplate,
  OperatorRole,
  OperatorTokenRecord,
  PolicyRecord,
  Registry,
  TemplateRecord,
} from '../registry-port.ts';
import { allowlistRows, assertOperatorToken, assertTemplate, clampLimit, toAuditEntry } from '../registry-input.ts';
import { auditEntryHash, AuditChainWalker, auditGenesisHash, type StoredAuditFields, storableText } from '../audit-chain.ts';
import { migrate } from './migrations.ts';

export interface SqliteRegistryOptions {
  /** Database file, or ':memory:' for a private in-process database (tests). */
  readonly path: string;
  readonly clock?: Clock;
}

/**
 * Opens (creating if needed) the embedded registry and brings its schema up to date. The file is shared
 * safely by several processes on one host (WAL readers never block the writer; writers wait up to the busy
 * timeout); beyond one host, use the PostgreSQL adapter.
 */
export async function openSqliteRegistry(options: SqliteRegistryOptions): Promise<Registry> {
  const clock = options.clock ?? systemClock;
  const onDisk = options.path !== ':memory:' && options.path !== '';
  if (onDisk) ownerOnly(options.path, { create: true });
  const db = new Database(options.path);
  try {
    db.pragma('journal_mode = WAL');
    // SQLite gives new -wal and -shm files the database file's mode; files left by a crash keep their own.
    if (onDisk) for (const suffix of ['-wal', '-shm']) ownerOnly(options.path + suffix, { create: false });
    // Per connection and off by default in SQLite: without it the REFERENCES clauses are decoration.
    db.pragma('foreign_keys = ON');
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    // synchronous stays FULL (the default): a certificate handed to a device must survive a power cut.
    migrate(db, clock);
    return new SqliteRegistry(db, clock);
  } catch (error) {
    db.close();
    throw error;
  }
}

/**
 * The registry file holds every identity, token hash and the audit trail: owner read/write only (README
 * "Data directory"), whatever the umask. SQLite would create it 0644; creating it first with 0600 and
 * chmod-ing also tightens a database an older version left world-readable.
 */
function ownerOnly(path: string, options: { create: boolean }): void {
  if (options.create) closeSync(openSync(path, 'a', 0o600));
  else if (!existsSync(path)) return;
  chmodSync(path, 0o600);
}

const busyTimeoutMs = 5_000;
/** Audit rows hashed per synchronous step of verifyAudit; the event loop (broker, API) runs in between. */
const verifyBatchSize = 2_000;

// Row shapes exactly as stored; the record types of the port are built from them in one place each.
interface DeviceRow {
  id: string;
  kind: IdentityKind;
  status: DeviceStatus;
  template: string;
  policy: string | null;
  attributes: string;
  reported_attributes: string;
  status_reason: string | null;
  created_at: string;
  updated_at: string;
}

interface CertificateRow {
  serial: string;
  device_id: string;
  fingerprint: string;
  public_key_hash: string;
  not_before: string;
  not_after: string;
  status: CertificateStatus;
  pem: string;
  issued_at: string;
  revoked_at: string | null;
  revocation_reason: string | null;
  replaces: string | null;
}

interface TemplateRow {
  name: string;
  policy: string;
  validity_days: number;
  key_types: string;
  require_allowlist: number;
  allow_reenroll: number;
  limits: string;
  created_at: string;
  updated_at: string;
}

interface PolicyRow {
  name: string;
  document: string;
  version: number;
  updated_at: string;
}

interface ClaimRow {
  id: string;
  template: string;
  certificate_serial: string;
  max_uses: number | null;
  uses: number;
  expires_at: string;
  status: ClaimStatus;
  created_at: string;
  issuer_pem: string | null;
}

interface AuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  result: AuditEntry['result'];
  code: AuditEntry['code'] | null;
  device_id: string | null;
  detail: string | null;
}

interface ChainedAuditRow extends AuditRow {
  prev_hash: string;
  hash: string;
}

interface OperatorTokenRow {
  name: string;
  role: OperatorRole;
  created_at: string;
  revoked_at: string | null;
}

const deviceColumns = ['id', 'kind', 'status', 'template', 'policy', 'attributes', 'reported_attributes', 'status_reason', 'created_at', 'updated_at'] as const;
const certificateColumns = [
  'serial', 'device_id', 'fingerprint', 'public_key_hash', 'not_before', 'not_after', 'status', 'pem', 'issued_at', 'revoked_at', 'revocation_reason', 'replaces',
] as const;
const templateColumns = ['name', 'policy', 'validity_days', 'key_types', 'require_allowlist', 'allow_reenroll', 'limits', 'created_at', 'updated_at'] as const;
const policyColumns = ['name', 'document', 'version', 'updated_at'] as const;
const claimColumns = ['id', 'template', 'certificate_serial', 'max_uses', 'uses', 'expires_at', 'status', 'created_at', 'issuer_pem'] as const;
const auditColumns = ['id', 'at', 'actor', 'action', 'result', 'code', 'device_id', 'detail'] as const;
// token_hash is deliberately not among them: it is looked up by, never read back.
const operatorTokenColumns = ['name', 'role', 'created_at', 'revoked_at'] as const;

const list = (columns: readonly string[]): string => columns.join(', ');
/** `alias.col AS alias_col, …` so one JOIN row can carry three records without name clashes. */
const aliased = (alias: string, columns: readonly string[]): string => columns.map((column) => `${alias}.${column} AS ${alias}_${column}`).join(', ');

function unprefix<T>(row: Record<string, unknown>, alias: string): T {
  const prefix = `${alias}_`;
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) if (key.startsWith(prefix)) result[key.slice(prefix.length)] = value;
  return result as T;
}

function prepareStatements(db: Database.Database) {
  return {
    getDevice: db.prepare<[string], DeviceRow>(`SELECT ${list(deviceColumns)} FROM devices WHERE id = ?`),
    insertDevice: db.prepare<[Record<string, unknown>], void>(
      `INSERT INTO devices (${list(deviceColumns)})
       VALUES (@id, @kind, 'active', @template, @policy, @attributes, @reportedAttributes, NULL, @now, @now)`,
    ),
    updateReportedAttributes: db.prepare<[Record<string, unknown>], void>('UPDATE devices SET reported_attributes = @reportedAttributes, updated_at = @now WHERE id = @id'),
    updateDeviceStatus: db.prepare<[Record<string, unknown>], DeviceRow>(
      `UPDATE devices SET status = @status, status_reason = @reason, updated_at = @now WHERE id = @id RETURNING ${list(deviceColumns)}`,
    ),

    getCertificate: db.prepare<[string], CertificateRow>(`SELECT ${list(certificateColumns)} FROM certificates WHERE serial = ?`),
    // Oldest first, with rowid breaking ties between certificates issued in the same millisecond.
    listCertificates: db.prepare<[string], CertificateRow>(
      `SELECT ${list(certificateColumns)} FROM certificates WHERE device_id = ? ORDER BY issued_at, rowid`,
    ),
    findCertificatesByPublicKey: db.prepare<[string], CertificateRow>(
      `SELECT ${list(certificateColumns)} FROM certificates WHERE public_key_hash = ? ORDER BY issued_at, rowid`,
    ),
    /** Any certificate of another device, whatever its status: a revoked device's key may be compromised. */
    publicKeyHolder: db.prepare<[string, string], string>(
      'SELECT device_id FROM certificates WHERE public_key_hash = ? AND device_id <> ? LIMIT 1',
    ).pluck(),
    insertCertificate: db.prepare<[Record<string, unknown>], CertificateRow>(
      `INSERT INTO certificates (${list(certificateColumns)})
       VALUES (@serial, @deviceId, @fingerprint, @publicKeyHash, @notBefore, @notAfter, 'active', @pem, @now, NULL, NULL, @replaces)
       RETURNING ${list(certificateColumns)}`,
    ),
    revokeDeviceCertificates: db.prepare<[Record<string, unknown>], void>(
      `UPDATE certificates SET status = 'revoked', revoked_at = @now, revocation_reason = @reason
       WHERE device_id = @deviceId AND status <> 'revoked'`,
    ),
    supersedeDeviceCertificates: db.prepare<[Record<string, unknown>], void>(
      `UPDATE certificates SET status = 'superseded', revoked_at = @now, revocation_reason = 'superseded'
       WHERE device_id = @deviceId AND status = 'active'`,
    ),
    // Renewals of the same certificate that lost the race: the first one used retires the others.
    supersedeSiblings: db.prepare<[Record<string, unknown>], { serial: string; device_id: string }>(
      `UPDATE certificates SET status = 'superseded', revoked_at = @now, revocation_reason = 'superseded'
       WHERE replaces = @replaces AND serial <> @serial AND status = 'active' RETURNING serial, device_id`,
    ),
    supersedeCertificate: db.prepare<[Record<string, unknown>], { serial: string; device_id: string }>(
      `UPDATE certificates SET status = 'superseded', revoked_at = @now, revocation_reason = 'superseded'
       WHERE serial = @serial AND status = 'active' RETURNING serial, device_id`,
    ),
    // A suspended device's certificates are on hold (RFC 5280 §5.3.1 certificateHold) since its last status change.
    listRevoked: db.prepare<[{ now: string }], { serial: string; revoked_at: string; revocation_reason: string | null }>(
      `SELECT serial, revoked_at, revocation_reason FROM certificates
       WHERE status IN ('revoked', 'superseded') AND not_after > @now
       UNION ALL
       SELECT c.serial, d.updated_at AS revoked_at, 'certificateHold' AS revocation_reason
       FROM certificates c JOIN devices d ON d.id = c.device_id
       WHERE c.status = 'active' AND d.status = 'suspended' AND c.not_after > @now
       ORDER BY revoked_at, serial`,
    ),
    activeCertificateForKey: db.prepare<[string, string], CertificateRow>(
      `SELECT ${list(certificateColumns)} FROM certificates WHERE device_id = ? AND public_key_hash = ? AND status = 'active'
       ORDER BY issued_at DESC, rowid DESC LIMIT 1`,
    ),
    // The broker's hot path: one round trip for everything admission needs. LEFT JOINs so that a missing
    // policy shows up as "no policy" (refused by the caller) rather than as an unknown certificate.
    getAdmission: db.prepare<[string], Record<string, unknown>>(
      `SELECT ${aliased('c', certificateColumns)}, ${aliased('d', deviceColumns)}, ${aliased('p', policyColumns)}, t.limits AS t_limits
       FROM certificates c
       JOIN devices d ON d.id = c.device_id
       LEFT JOIN templates t ON t.name = d.template
       LEFT JOIN policies p ON p.name = COALESCE(d.policy, t.policy)
       WHERE c.serial = ?`,
    ),

    getTemplate: db.prepare<[string], TemplateRow>(`SELECT ${list(templateColumns)} FROM templates WHERE name = ?`),
    listTemplates: db.prepare<[], TemplateRow>(`SELECT ${list(templateColumns)} FROM templates ORDER BY name`),
    templateExists: db.prepare<[string], number>('SELECT 1 FROM templates WHERE name = ?').pluck(),
    upsertTemplate: db.prepare<[Record<string, unknown>], TemplateRow>(
      `INSERT INTO templates (${list(templateColumns)})
       VALUES (@name, @policy, @validityDays, @keyTypes, @requireAllowlist, @allowReenroll, @limits, @now, @now)
       ON CONFLICT (name) DO UPDATE SET
         policy = excluded.policy, validity_days = excluded.validity_days, key_types = excluded.key_types,
         require_allowlist = excluded.require_allowlist, allow_reenroll = excluded.allow_reenroll, limits = excluded.limits, updated_at = excluded.updated_at
       RETURNING ${list(templateColumns)}`,
    ),

    getPolicy: db.prepare<[string], PolicyRow>(`SELECT ${list(policyColumns)} FROM policies WHERE name = ?`),
    listPolicies: db.prepare<[], PolicyRow>(`SELECT ${list(policyColumns)} FROM policies ORDER BY name`),
    policyExists: db.prepare<[string], number>('SELECT 1 FROM policies WHERE name = ?').pluck(),
    upsertPolicy: db.prepare<[Record<string, unknown>], PolicyRow>(
      `INSERT INTO policies (${list(policyColumns)}) VALUES (@name, @document, 1, @now)
       ON CONFLICT (name) DO UPDATE SET document = excluded.document, version = policies.version + 1, updated_at = excluded.updated_at
       RETURNING ${list(policyColumns)}`,
    ),

    getClaim: db.prepare<[string], ClaimRow>(`SELECT ${list(claimColumns)} FROM claims WHERE id = ?`),
    getClaimBySerial: db.prepare<[string], ClaimRow>(`SELECT ${list(claimColumns)} FROM claims WHERE certificate_serial = ?`),
    listClaimIssuers: db.prepare<[], ClaimRow>(`SELECT ${list(claimColumns)} FROM claims WHERE issuer_pem IS NOT NULL AND status = 'active' ORDER BY id`),
    listClaims: db.prepare<[], ClaimRow>(`SELECT ${list(claimColumns)} FROM claims ORDER BY created_at, id`),
    revokeClaim: db.prepare<[string], ClaimRow>(`UPDATE claims SET status = 'revoked' WHERE id = ? RETURNING ${list(claimColumns)}`),
    // Atomic use: the row changes only if a use is left, so racing enrollments can never exceed max_uses.
    consumeClaimUse: db.prepare<[Record<string, unknown>], void>(
      `UPDATE claims SET uses = uses + 1
       WHERE id = @id AND status = 'active' AND expires_at > @now AND (max_uses IS NULL OR uses < max_uses)`,
    ),
    allowlisted: db.prepare<[string, string], number>('SELECT 1 FROM allowlist WHERE template = ? AND serial = ?').pluck(),
    allowlistAttributes: db.prepare<[string, string], string>('SELECT attributes FROM allowlist WHERE template = ? AND serial = ?').pluck(),
    insertAllowlist: db.prepare<[Record<string, unknown>], void>(
      `INSERT INTO allowlist (template, serial, added_at, attributes) VALUES (@template, @serial, @now, coalesce(@attributes, '{}')) ON CONFLICT DO NOTHING`,
    ),
    updateAllowlistAttributes: db.prepare<[Record<string, unknown>], void>('UPDATE allowlist SET attributes = @attributes WHERE template = @template AND serial = @serial'),
    countAllowlist: db.prepare<[string], number>('SELECT count(*) FROM allowlist WHERE template = ?').pluck(),
    insertClaim: db.prepare<[Record<string, unknown>], ClaimRow>(
      `INSERT INTO claims (${list(claimColumns)}) VALUES (@id, @template, @certificateSerial, @maxUses, 0, @expiresAt, 'active', @now, @issuerPem)
       RETURNING ${list(claimColumns)}`,
    ),

    // The next id is the one after the highest ever handed out (sqlite_sequence survives deleted rows), so
    // ids stay gapless and are never reused; the newest row's hash is what the new entry links to.
    auditChainTip: db.prepare<[], { last_id: number; last_hash: string | null }>(
      `SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), COALESCE((SELECT max(id) FROM audit_log), 0)) AS last_id,
              (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) AS last_hash`,
    ),
    insertAudit: db.prepare<[Record<string, unknown>], void>(
      `INSERT INTO audit_log (${list(auditColumns)}, prev_hash, hash)
       VALUES (@id, @at, @actor, @action, @result, @code, @deviceId, @detail, @prevHash, @hash)`,
    ),
    auditChainBatch: db.prepare<[number, number], ChainedAuditRow>(
      `SELECT ${list(auditColumns)}, prev_hash, hash FROM audit_log WHERE id > ? ORDER BY id LIMIT ?`,
    ),
    // One statement, so both numbers come from the same snapshot.
    auditIds: db.prepare<[], { seq: number; max_id: number }>(
      `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0) AS seq, COALESCE((SELECT max(id) FROM audit_log), 0) AS max_id`,
    ),

    getOperatorToken: db.prepare<[string], OperatorTokenRow>(`SELECT ${list(operatorTokenColumns)} FROM operator_tokens WHERE name = ?`),
    findOperatorToken: db.prepare<[string], OperatorTokenRow>(`SELECT ${list(operatorTokenColumns)} FROM operator_tokens WHERE token_hash = ?`),
    listOperatorTokens: db.prepare<[], OperatorTokenRow>(`SELECT ${list(operatorTokenColumns)} FROM operator_tokens ORDER BY name`),
    insertOperatorToken: db.prepare<[Record<string, unknown>], OperatorTokenRow>(
      `INSERT INTO operator_tokens (name, role, token_hash, created_at, revoked_at) VALUES (@name, @role, @tokenHash, @now, NULL)
       RETURNING ${list(operatorTokenColumns)}`,
    ),
    // The first revocation date stands.
    revokeOperatorToken: db.prepare<[Record<string, unknown>], OperatorTokenRow>(
      `UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, @now) WHERE name = @name RETURNING ${list(operatorTokenColumns)}`,
    ),
  };
}

class SqliteRegistry implements Registry {
  readonly #db: Database.Database;
  readonly #clock: Clock;
  readonly #sql: ReturnType<typeof prepareStatements>;
  /** Queries whose WHERE clause depends on which filters are set: prepared on first use, then reused. */
  readonly #dynamic = new Map<string, Statement<[Record<string, unknown>], unknown>>();
  readonly #transaction: Database.Transaction<(work: () => unknown) => unknown>;

  constructor(db: Database.Database, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#sql = prepareStatements(db);
    this.#transaction = db.transaction((work: () => unknown) => work());
  }

  /**
   * Every write runs here. IMMEDIATE takes the write lock up front: a DEFERRED transaction that reads and
   * then writes can fail with SQLITE_BUSY when another process committed in between, and busy_timeout does
   * not retry that case. A throw rolls everything back, so a refusal leaves no row behind.
   */
  #write<T>(work: () => T): T {
    return this.#transaction.immediate(work) as T;
  }

  #now(): string {
    return this.#clock.now().toISOString();
  }

  #query<R>(sql: string, params: Record<string, unknown>): R[] {
    let statement = this.#dynamic.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare<[Record<string, unknown>], unknown>(sql);
      this.#dynamic.set(sql, statement);
    }
    return statement.all(params) as R[];
  }

  /**
   * Appends one hash-chained entry. Reading the chain's tip and inserting after it must be atomic, or two
   * writers would link to the same predecessor and fork the chain: only ever called inside #write.
   */
  #insertAudit(entry: AuditInput): AuditEntry {
    if (!this.#db.inTransaction) throw new FleetgateError('INTERNAL', { detail: { reason: 'audit entry written outside a write transaction' } });
    const at = entry.at ?? this.#clock.now();
    const tip = expectRow(this.#sql.auditChainTip.get());
    const fields: StoredAuditFields = {
      id: tip.last_id + 1,
      at: at.toISOString(),
      actor: storableText(entry.actor),
      action: storableText(entry.action),
      result: entry.result,
      code: entry.code ?? null,
      deviceId: entry.deviceId === undefined ? null : storableText(entry.deviceId),
      // JSON.stringify escapes lone surrogates itself, so this text is stored as it is.
      detail: entry.detail === undefined ? null : JSON.stringify(entry.detail),
    };
    const prevHash = tip.last_hash ?? auditGenesisHash;
    this.#sql.insertAudit.run({ ...fields, prevHash, hash: auditEntryHash(prevHash, fields) });
    // Returned as stored (JSON drops undefined and functions), as queryAudit will.
    return toAuditEntry({
      id: fields.id,
      at,
      actor: fields.actor,
      action: fields.action,
      result: entry.result,
      ...(entry.code === undefined ? {} : { code: entry.code }),
      ...(fields.deviceId === null ? {} : { deviceId: fields.deviceId }),
      ...(fields.detail === null ? {} : { detail: JSON.parse(fields.detail) as Record<string, unknown> }),
    });
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const row = this.#sql.getDevice.get(id);
    return row === undefined ? undefined : toDevice(row);
  }

  async listDevices(query: DeviceQuery = {}): Promise<DeviceRecord[]> {
    const { where, params } = filters(query.limit, [
      ['status = @status', { status: query.status }],
      ['kind = @kind', { kind: query.kind }],
      ['template = @template', { template: query.template }],
      // A range on the primary key instead of LIKE: LIKE is case-insensitive and treats % and _ as wildcards.
      // Under the BINARY collation no character sorts after U+10FFFF, so this bounds every id with the prefix.
      ['id >= @prefix AND id < @prefixEnd', { prefix: query.prefix || undefined, prefixEnd: `${query.prefix ?? ''}\u{10FFFF}` }],
      ['id > @after', { after: query.after }],
    ]);
    const sql = `SELECT ${list(deviceColumns)} FROM devices ${whereClause(where)} ORDER BY id LIMIT @limit`;
    return this.#query<DeviceRow>(sql, params).map(toDevice);
  }

  async registerCertificate(input: { device: NewDevice; certificate: NewCertificate; mustBeNew: boolean; audit: AuditInput }): Promise<CertificateRecord> {
    const { device, certificate, mustBeNew, audit } = input;
    // The id goes into topics and certificate names; the registry is the last gate before it is stored.
    const id = assertDeviceId(device.id);
    const attributes = assertAttributes(device.attributes);
    return this.#write(() => {
      const existing = this.#sql.getDevice.get(id);
      if (existing !== undefined) {
        if (mustBeNew) throw new FleetgateError('DEVICE_EXISTS', { detail: { id } });
        if (existing.status === 'revoked') throw new FleetgateError('AUTH_DEVICE_REVOKED', { detail: { id } });
      } else {
        if (this.#sql.templateExists.get(device.template) === undefined) {
          throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: device.template } });
        }
        if (device.policy != null && this.#sql.policyExists.get(device.policy) === undefined) {
          throw new FleetgateError('POLICY_NOT_FOUND', { detail: { policy: device.policy } });
        }
      }
      if (certificate.replaces != null) {
        const replaced = this.#sql.getCertificate.get(certificate.replaces);
        if (replaced === undefined || replaced.device_id !== id) throw new FleetgateError('CERT_NOT_FOUND', { detail: { serial: certificate.replaces } });
        if (replaced.status !== 'active') throw new FleetgateError('AUTH_CERT_REVOKED', { detail: { serial: certificate.replaces, status: replaced.status } });
      }
      this.#assertKeyFree(certificate.publicKeyHash, id);

      const now = this.#now();
      if (existing === undefined) {
        this.#sql.insertDevice.run({
          id,
          kind: device.kind,
          template: device.template,
          policy: device.policy ?? null,
          attributes: JSON.stringify(attributes),
          reportedAttributes: JSON.stringify(assertAttributes(device.reportedAttributes)),
          now,
        });
      }
      const row = this.#sql.insertCertificate.get({
        serial: certificate.serial,
        deviceId: id,
        fingerprint: certificate.fingerprint,
        publicKeyHash: certificate.publicKeyHash,
        notBefore: certificate.notBefore.toISOString(),
        notAfter: certificate.notAfter.toISOString(),
        pem: certificate.pem,
        replaces: certificate.replaces ?? null,
        now,
      });
      this.#insertAudit({ ...audit, deviceId: audit.deviceId ?? id });
      return toCertificate(expectRow(row));
    });
  }

  /** The same device may present its key again (lost reply, renewal with the same key); another may not. */
  #assertKeyFree(publicKeyHash: string, deviceId: string): void {
    const holder = this.#sql.publicKeyHolder.get(publicKeyHash, deviceId);
    if (holder !== undefined) throw new FleetgateError('PKI_PUBLIC_KEY_IN_USE', { detail: { publicKeyHash, boundTo: holder } });
  }

  async enrollWithClaim(input: {
    claimId: string;
    device: NewDevice;
    certificate: NewCertificate;
    requireAllowlist: boolean;
    allowReenroll: boolean;
    audit: AuditInput;
  }): Promise<{ certificate: CertificateRecord; repeated: boolean }> {
    const { claimId, device, certificate, audit } = input;
    const id = assertDeviceId(device.id);
    const trusted = assertAttributes(device.attributes);
    const reported = JSON.stringify(assertAttributes(device.reportedAttributes));
    return this.#write(() => {
      const now = this.#now();
      const claimRow = this.#sql.getClaim.get(claimId);
      if (claimRow === undefined) throw new FleetgateError('ENROLL_CLAIM_UNKNOWN', { detail: { claimId } });
      const claim = toClaim(claimRow);
      const existing = this.#sql.getDevice.get(id);
      const listed = this.#sql.allowlistAttributes.get(claim.template, id);
      const same = existing === undefined ? undefined : this.#sql.activeCertificateForKey.get(id, certificate.publicKeyHash);
      // The rule is core's (decideEnrollment); this adapter only supplies the rows it read under the write lock.
      const decision = assertEnrollment(
        {
          claim,
          template: { requireAllowlist: input.requireAllowlist, allowReenroll: input.allowReenroll },
          serialAllowed: listed !== undefined,
          existing: existing === undefined ? undefined : { kind: existing.kind, status: existing.status, template: existing.template, policy: existing.policy },
          holdsSameKey: same !== undefined,
          now: new Date(now),
        },
        { claimId, id, template: claim.template },
      );
      if (decision.outcome === 'repeat' && same !== undefined) return { certificate: toCertificate(same), repeated: true };
      this.#assertKeyFree(certificate.publicKeyHash, id);

      if (decision.outcome === 'enroll') {
        const attributes = { ...trusted, ...(listed === undefined ? {} : (JSON.parse(listed) as Record<string, string>)) };
        this.#sql.insertDevice.run({ id, kind: 'device', template: claim.template, policy: null, attributes: JSON.stringify(attributes), reportedAttributes: reported, now });
      } else {
        this.#sql.supersedeDeviceCertificates.run({ deviceId: id, now });
        this.#sql.updateReportedAttributes.run({ id, reportedAttributes: reported, now });
      }
      this.#sql.consumeClaimUse.run({ id: claimId, now });
      const row = this.#sql.insertCertificate.get({
        serial: certificate.serial,
        deviceId: id,
        fingerprint: certificate.fingerprint,
        publicKeyHash: certificate.publicKeyHash,
        notBefore: certificate.notBefore.toISOString(),
        notAfter: certificate.notAfter.toISOString(),
        pem: certificate.pem,
        replaces: null,
        now,
      });
      this.#insertAudit({ ...audit, deviceId: audit.deviceId ?? id, detail: { ...audit.detail, reenrolled: decision.outcome === 'reenroll' } });
      return { certificate: toCertificate(expectRow(row)), repeated: false };
    });
  }

  async supersedeReplaced(serial: string, audit: AuditInput): Promise<string | undefined> {
    const current = this.#sql.getCertificate.get(serial);
    if (current?.replaces == null) return undefined;
    const replaces = current.replaces;
    return this.#write(() => {
      const now = this.#now();
      const changed = this.#sql.supersedeCertificate.get({ serial: replaces, now });
      const siblings = this.#sql.supersedeSiblings.all({ replaces, serial, now });
      if (changed === undefined && siblings.length === 0) return undefined;
      const deviceId = audit.deviceId ?? changed?.device_id ?? siblings[0]?.device_id;
      this.#insertAudit({ ...audit, ...(deviceId ? { deviceId } : {}), detail: { ...audit.detail, superseded: replaces, by: serial, ...(siblings.length > 0 ? { siblings: siblings.map((row) => row.serial) } : {}) } });
      return changed === undefined ? undefined : replaces;
    });
  }

  async importAllowlist(template: string, entries: readonly AllowlistEntry[], audit: AuditInput): Promise<{ added: number; total: number }> {
    const rows = allowlistRows(entries);
    return this.#write(() => {
      if (this.#sql.templateExists.get(template) === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template } });
      const now = this.#now();
      let added = 0;
      for (const { serial, attributes } of rows) {
        const json = attributes === undefined ? null : JSON.stringify(attributes);
        const inserted = this.#sql.insertAllowlist.run({ template, serial, attributes: json, now }).changes;
        added += inserted;
        if (inserted === 0 && json !== null) this.#sql.updateAllowlistAttributes.run({ template, serial, attributes: json });
      }
      const total = this.#sql.countAllowlist.get(template) ?? 0;
      this.#insertAudit({ ...audit, detail: { ...audit.detail, template, added, total, withAttributes: rows.filter((row) => row.attributes !== undefined).length } });
      return { added, total };
    });
  }

  async isSerialAllowed(template: string, serial: string): Promise<boolean> {
    return this.#sql.allowlisted.get(template, serial) !== undefined;
  }

  async setDeviceStatus(input: { id: string; status: DeviceStatus; reason: string | null; audit: AuditInput }): Promise<DeviceRecord> {
    const { id, status, reason, audit } = input;
    return this.#write(() => {
      const current = this.#sql.getDevice.get(id);
      if (current === undefined) throw new FleetgateError('DEVICE_NOT_FOUND', { detail: { id } });
      let row = current;
      if (current.status === 'revoked') {
        // Revocation is final. Revoking again changes nothing (the first reason and date stand) but is audited.
        if (status !== 'revoked') throw new FleetgateError('AUTH_DEVICE_REVOKED', { detail: { id, requested: status } });
      } else {
        const now = this.#now();
        row = expectRow(this.#sql.updateDeviceStatus.get({ id, status, reason, now }));
        if (status === 'revoked') {
          this.#sql.revokeDeviceCertificates.run({ deviceId: id, now, reason: reason ?? 'unspecified' });
        }
      }
      this.#insertAudit({ ...audit, deviceId: audit.deviceId ?? id });
      return toDevice(row);
    });
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const row = this.#sql.getCertificate.get(serial);
    return row === undefined ? undefined : toCertificate(row);
  }

  async listCertificates(deviceId: string): Promise<CertificateRecord[]> {
    return this.#sql.listCertificates.all(deviceId).map(toCertificate);
  }

  async findCertificatesByPublicKey(publicKeyHash: string): Promise<CertificateRecord[]> {
    return this.#sql.findCertificatesByPublicKey.all(publicKeyHash).map(toCertificate);
  }

  async listRevokedCertificates(now: Date): Promise<{ serial: string; revokedAt: Date; reason: string }[]> {
    return this.#sql.listRevoked.all({ now: now.toISOString() }).map((row) => ({ serial: row.serial, revokedAt: new Date(row.revoked_at), reason: row.revocation_reason ?? 'unspecified' }));
  }

  async getAdmission(certificateSerial: string): Promise<Admission | undefined> {
    const row = this.#sql.getAdmission.get(certificateSerial);
    if (row === undefined) return undefined;
    const policy = unprefix<PolicyRow | { name: null }>(row, 'p');
    return {
      certificate: toCertificate(unprefix<CertificateRow>(row, 'c')),
      device: toDevice(unprefix<DeviceRow>(row, 'd')),
      policy: policy.name === null ? undefined : toPolicy(policy as PolicyRow),
      limits: typeof row.t_limits === 'string' ? (JSON.parse(row.t_limits) as TemplateLimits) : {},
    };
  }

  async getTemplate(name: string): Promise<TemplateRecord | undefined> {
    const row = this.#sql.getTemplate.get(name);
    return row === undefined ? undefined : toTemplate(row);
  }

  async listTemplates(): Promise<TemplateRecord[]> {
    return this.#sql.listTemplates.all().map(toTemplate);
  }

  async putTemplate(template: NewTemplate, audit: AuditInput): Promise<TemplateRecord> {
    assertTemplate(template);
    return this.#write(() => {
      if (this.#sql.policyExists.get(template.policy) === undefined) {
        throw new FleetgateError('POLICY_NOT_FOUND', { detail: { policy: template.policy, template: template.name } });
      }
      const row = this.#sql.upsertTemplate.get({
        name: template.name,
        policy: template.policy,
        validityDays: template.validityDays,
        keyTypes: JSON.stringify(template.keyTypes),
        requireAllowlist: template.requireAllowlist ? 1 : 0,
        allowReenroll: template.allowReenroll ? 1 : 0,
        limits: JSON.stringify(template.limits ?? {}),
        now: this.#now(),
      });
      this.#insertAudit(audit);
      return toTemplate(expectRow(row));
    });
  }

  async getPolicy(name: string): Promise<PolicyRecord | undefined> {
    const row = this.#sql.getPolicy.get(name);
    return row === undefined ? undefined : toPolicy(row);
  }

  async listPolicies(): Promise<PolicyRecord[]> {
    return this.#sql.listPolicies.all().map(toPolicy);
  }

  async putPolicy(name: string, document: PolicyDocument, audit: AuditInput): Promise<PolicyRecord> {
    // Re-validated here because a stored policy that does not parse would lock every device using it out.
    const parsed = parsePolicyDocument(document);
    return this.#write(() => {
      const row = this.#sql.upsertPolicy.get({ name, document: JSON.stringify(parsed), now: this.#now() });
      this.#insertAudit(audit);
      return toPolicy(expectRow(row));
    });
  }

  async createClaim(claim: NewClaim, audit: AuditInput): Promise<ClaimRecord> {
    return this.#write(() => {
      if (this.#sql.templateExists.get(claim.template) === undefined) {
        throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: claim.template } });
      }
      const row = this.#sql.insertClaim.get({
        id: claim.id,
        template: claim.template,
        certificateSerial: claim.certificateSerial,
        maxUses: claim.maxUses,
        expiresAt: claim.expiresAt.toISOString(),
        issuerPem: claim.issuerPem ?? null,
        now: this.#now(),
      });
      this.#insertAudit(audit);
      return toClaim(expectRow(row));
    });
  }

  async getClaim(id: string): Promise<ClaimRecord | undefined> {
    const row = this.#sql.getClaim.get(id);
    return row === undefined ? undefined : toClaim(row);
  }

  async listClaimIssuers(): Promise<ClaimRecord[]> {
    return this.#sql.listClaimIssuers.all().map(toClaim);
  }

  async listClaims(): Promise<ClaimRecord[]> {
    return this.#sql.listClaims.all().map(toClaim);
  }

  async revokeClaim(id: string, audit: AuditInput): Promise<ClaimRecord> {
    return this.#write(() => {
      const row = this.#sql.revokeClaim.get(id);
      if (row === undefined) throw new FleetgateError('CLAIM_NOT_FOUND', { detail: { claimId: id } });
      this.#insertAudit({ ...audit, detail: { ...audit.detail, claimId: id } });
      return toClaim(row);
    });
  }

  async getClaimByCertificateSerial(serial: string): Promise<ClaimRecord | undefined> {
    const row = this.#sql.getClaimBySerial.get(serial);
    return row === undefined ? undefined : toClaim(row);
  }

  async appendAudit(entry: AuditInput): Promise<AuditEntry> {
    return this.#write(() => this.#insertAudit(entry));
  }

  async verifyAudit(options: { anchor?: AuditAnchor } = {}): Promise<AuditVerification> {
    const walker = new AuditChainWalker(options.anchor);
    for (;;) {
      let read = 0;
      for (const row of this.#sql.auditChainBatch.iterate(walker.lastId, verifyBatchSize)) {
        read += 1;
        const broken = walker.check({ ...row, code: row.code ?? null, deviceId: row.device_id, prevHash: row.prev_hash });
        if (broken !== undefined) return broken;
      }
      if (read < verifyBatchSize) {
        const ids = expectRow(this.#sql.auditIds.get());
        // Entries appended while we walked are checked too; otherwise this was the end of the log.
        if (ids.max_id <= walker.lastId) return walker.finish(Math.max(ids.seq, ids.max_id));
      }
      await nextTurn();
    }
  }

  async createOperatorToken(input: { name: string; role: OperatorRole; tokenHash: string; audit: AuditInput }): Promise<OperatorTokenRecord> {
    const { name, role, tokenHash, audit } = input;
    assertOperatorToken(name, role, tokenHash);
    return this.#write(() => {
      if (this.#sql.getOperatorToken.get(name) !== undefined) {
        throw new FleetgateError('OPERATOR_TOKEN_EXISTS', { detail: { name } });
      }
      const row = this.#sql.insertOperatorToken.get({ name, role, tokenHash, now: this.#now() });
      this.#insertAudit({ ...audit, detail: { ...audit.detail, name, role } });
      return toOperatorToken(expectRow(row));
    });
  }

  async findOperatorToken(tokenHash: string): Promise<OperatorTokenRecord | undefined> {
    const row = this.#sql.findOperatorToken.get(tokenHash);
    return row === undefined ? undefined : toOperatorToken(row);
  }

  async listOperatorTokens(): Promise<OperatorTokenRecord[]> {
    return this.#sql.listOperatorTokens.all().map(toOperatorToken);
  }

  async revokeOperatorToken(name: string, audit: AuditInput): Promise<OperatorTokenRecord> {
    return this.#write(() => {
      const before = this.#sql.getOperatorToken.get(name);
      if (before === undefined) {
        throw new FleetgateError('OPERATOR_TOKEN_NOT_FOUND', { detail: { name } });
      }
      const row = expectRow(this.#sql.revokeOperatorToken.get({ name, now: this.#now() }));
      this.#insertAudit({ ...audit, detail: { ...audit.detail, name, role: row.role, alreadyRevoked: before.revoked_at !== null } });
      return toOperatorToken(row);
    });
  }

  async queryAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const { where, params } = filters(query.limit, [
      ['device_id = @deviceId', { deviceId: query.deviceId }],
      ['actor = @actor', { actor: query.actor }],
      ['action = @action', { action: query.action }],
      ['result = @result', { result: query.result }],
      // Half-open [since, until): consecutive windows neither overlap nor leave gaps.
      ['at >= @since', { since: query.since?.toISOString() }],
      ['at < @until', { until: query.until?.toISOString() }],
      ['id > @afterId', { afterId: query.afterId }],
    ]);
    // Ordered by id, not by `at`: callers may supply `at`, but ids are the order entries were written in.
    const order = query.afterId === undefined ? 'DESC' : 'ASC';
    const sql = `SELECT ${list(auditColumns)} FROM audit_log ${whereClause(where)} ORDER BY id ${order} LIMIT @limit`;
    return this.#query<AuditRow>(sql, params).map((row) =>
      toAuditEntry({
        id: row.id,
        at: new Date(row.at),
        actor: row.actor,
        action: row.action,
        result: row.result,
        ...(row.code === null ? {} : { code: row.code }),
        ...(row.device_id === null ? {} : { deviceId: row.device_id }),
        ...(row.detail === null ? {} : { detail: JSON.parse(row.detail) as Record<string, unknown> }),
      }),
    );
  }

  async close(): Promise<void> {
    if (!this.#db.open) return;
    // Lets SQLite refresh planner statistics it found stale during this connection's lifetime.
    this.#db.pragma('optimize');
    this.#db.close();
  }
}

/**
 * Keeps the conditions whose first parameter is set. The SQL text then depends only on which filters are
 * present, so the statement cache holds at most one statement per combination.
 */
function filters(limit: number | undefined, candidates: ReadonlyArray<readonly [condition: string, values: Record<string, unknown>]>) {
  const where: string[] = [];
  const params: Record<string, unknown> = { limit: clampLimit(limit) };
  for (const [condition, values] of candidates) {
    if (Object.values(values)[0] === undefined) continue;
    where.push(condition);
    Object.assign(params, values);
  }
  return { where, params };
}

function whereClause(conditions: readonly string[]): string {
  return conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
}

/** RETURNING on an INSERT or an UPDATE of a row just read always yields it; anything else is a bug. */
function expectRow<T>(row: T | undefined): T {
  if (row === undefined) throw new FleetgateError('INTERNAL', { detail: { reason: 'write returned no row' } });
  return row;
}

function toOperatorToken(row: OperatorTokenRow): OperatorTokenRecord {
  return { name: row.name, role: row.role, createdAt: new Date(row.created_at), revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at) };
}

function toDevice(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    kind: row.kind,
    status: row.status,
    template: row.template,
    policy: row.policy,
    attributes: JSON.parse(row.attributes) as Record<string, string>,
    reportedAttributes: JSON.parse(row.reported_attributes) as Record<string, string>,
    statusReason: row.status_reason,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toCertificate(row: CertificateRow): CertificateRecord {
  return {
    serial: row.serial,
    deviceId: row.device_id,
    fingerprint: row.fingerprint,
    publicKeyHash: row.public_key_hash,
    notBefore: new Date(row.not_before),
    notAfter: new Date(row.not_after),
    status: row.status,
    pem: row.pem,
    issuedAt: new Date(row.issued_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
    revocationReason: row.revocation_reason,
    replaces: row.replaces,
  };
}

function toTemplate(row: TemplateRow): TemplateRecord {
  return {
    name: row.name,
    policy: row.policy,
    validityDays: row.validity_days,
    keyTypes: JSON.parse(row.key_types) as string[],
    requireAllowlist: row.require_allowlist === 1,
    allowReenroll: row.allow_reenroll === 1,
    limits: JSON.parse(row.limits) as TemplateLimits,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toPolicy(row: PolicyRow): PolicyRecord {
  return {
    name: row.name,
    // Validated by parsePolicyDocument before it was written.
    document: JSON.parse(row.document) as PolicyDocument,
    version: row.version,
    updatedAt: new Date(row.updated_at),
  };
}

function toClaim(row: ClaimRow): ClaimRecord {
  return {
    id: row.id,
    template: row.template,
    certificateSerial: row.certificate_serial,
    maxUses: row.max_uses,
    uses: row.uses,
    expiresAt: new Date(row.expires_at),
    status: row.status,
    createdAt: new Date(row.created_at),
    issuerPem: row.issuer_pem,
  };
}
