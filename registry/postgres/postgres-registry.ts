import pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
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
import { auditEntryHash, AuditChainWalker, auditGenesisHash, type StoredAuditFields, storableText } from '../audit-chain.ts';
import { allowlistRows, assertOperatorToken, assertTemplate, clampLimit, toAuditEntry } from '../registry-input.ts';
import { advisoryLockKey } from './advisory-lock.ts';
import { parsePostgresUrl } from './connection-url.ts';
import { migrate } from './migrations.ts';

export interface PostgresRegistryOptions {
  /** `postgres://user:password@host:port/database`, optionally with `?schema=NAME`. */
  readonly url: string;
  /** Schema holding fleetgate's tables, created if missing; wins over `?schema=`. Default: the role's current schema (usually public). */
  readonly schema?: string;
  readonly clock?: Clock;
  /**
   * Connection trouble the pool survives by itself (an idle connection dropped by a restarting server, …).
   * Calls that hit it reject on their own; this is for the log. Default: a process warning.
   */
  readonly onError?: (error: Error) => void;
  /** Giving up on opening a connection (server down, unreachable); default 3000 ms. */
  readonly connectTimeoutMs?: number;
  /** Giving up on one statement, server side and client side (a half-dead network); default 10000 ms. */
  readonly queryTimeoutMs?: number;
  /** Pool size; default 10. */
  readonly maxConnections?: number;
}

/**
 * Opens the PostgreSQL registry: a connection pool on `url`, the schema created and migrated if needed.
 * The semantics are the SQLite adapter's, statement for statement: every write takes one lock for the
 * schema (a transaction-scoped advisory lock) before it reads, so writes are serialised across every
 * process that shares the database exactly as SQLite's single writer serialises them. That is also what
 * keeps the audit hash chain linear and claim uses exact; reads never take it.
 */
export async function openPostgresRegistry(options: PostgresRegistryOptions): Promise<Registry> {
  const clock = options.clock ?? systemClock;
  const { connectionString, schema: requested } = parsePostgresUrl(options.url, options.schema);
  const queryTimeoutMs = options.queryTimeoutMs ?? 10_000;
  const onError = options.onError ?? ((error: Error) => process.emitWarning(`fleetgate registry: PostgreSQL connection error: ${error.message}`, 'FleetgateRegistryWarning'));
  const pool = new pg.Pool({
    connectionString,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3_000,
    // The server cancels a statement that runs too long; the client gives up a little later on a
    // connection that stopped answering at all. Either way the call rejects and the caller fails closed.
    statement_timeout: queryTimeoutMs,
    query_timeout: queryTimeoutMs + 2_000,
    // A process stuck inside a transaction must not hold the write lock for ever.
    idle_in_transaction_session_timeout: queryTimeoutMs,
    keepAlive: true,
    max: options.maxConnections ?? 10,
    application_name: 'fleetgate',
    // Every pooled connection resolves table names in the registry's schema (names are checked identifiers).
    ...(requested === undefined ? {} : { options: `-c search_path=${requested}` }),
  });
  // An idle connection that dies emits here; without a listener the process would crash.
  pool.on('error', (error) => onError(error));
  try {
    const client = await pool.connect();
    let schema: string;
    try {
      schema = requested ?? (await currentSchema(client));
      await migrate(client, schema, clock);
    } finally {
      client.release();
    }
    return new PostgresRegistry(pool, clock, schema, onError);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}

async function currentSchema(client: PoolClient): Promise<string> {
  const { rows } = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
  const schema = rows[0]?.schema;
  if (schema == null) {
    throw new FleetgateError('CONFIG_INVALID', { message: 'The database role has no usable schema in its search_path; add ?schema=NAME to the database URL.' });
  }
  return schema;
}

/** Audit rows hashed per step of verifyAudit; the event loop (broker, API) runs in between. */
const verifyBatchSize = 2_000;

// Row shapes as node-postgres returns them: timestamptz as Date, json parsed, bigint as a decimal string.
interface DeviceRow {
  id: string;
  kind: IdentityKind;
  status: DeviceStatus;
  template: string;
  policy: string | null;
  attributes: Record<string, string>;
  reported_attributes: Record<string, string>;
  status_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

interface CertificateRow {
  serial: string;
  device_id: string;
  fingerprint: string;
  public_key_hash: string;
  not_before: Date;
  not_after: Date;
  status: CertificateStatus;
  pem: string;
  issued_at: Date;
  revoked_at: Date | null;
  revocation_reason: string | null;
  replaces: string | null;
}

interface TemplateRow {
  name: string;
  policy: string;
  validity_days: number;
  key_types: string[];
  require_allowlist: boolean;
  allow_reenroll: boolean;
  limits: TemplateLimits;
  created_at: Date;
  updated_at: Date;
}

interface PolicyRow {
  name: string;
  document: PolicyDocument;
  version: number;
  updated_at: Date;
}

interface ClaimRow {
  id: string;
  template: string;
  certificate_serial: string;
  max_uses: number | null;
  uses: number;
  expires_at: Date;
  status: ClaimStatus;
  created_at: Date;
  issuer_pem: string | null;
}

interface AuditRow {
  id: string;
  at: Date;
  actor: string;
  action: string;
  result: AuditEntry['result'];
  code: AuditEntry['code'] | null;
  device_id: string | null;
  /** As text (`detail::text`): the hash covers the text stored, not a re-serialisation. */
  detail: string | null;
}

interface ChainedAuditRow extends AuditRow {
  prev_hash: string;
  hash: string;
}

/** The newest audit entry as the write lock's holder sees it. */
interface AuditTip {
  last_id: string;
  last_hash: string | null;
}

interface OperatorTokenRow {
  name: string;
  role: OperatorRole;
  created_at: Date;
  revoked_at: Date | null;
}

const deviceColumns = ['id', 'kind', 'status', 'template', 'policy', 'attributes', 'reported_attributes', 'status_reason', 'created_at', 'updated_at'] as const;
const certificateColumns = [
  'serial', 'device_id', 'fingerprint', 'public_key_hash', 'not_before', 'not_after', 'status', 'pem', 'issued_at', 'revoked_at', 'revocation_reason', 'replaces',
] as const;
const templateColumns = ['name', 'policy', 'validity_days', 'key_types', 'require_allowlist', 'allow_reenroll', 'limits', 'created_at', 'updated_at'] as const;
const policyColumns = ['name', 'document', 'version', 'updated_at'] as const;
const claimColumns = ['id', 'template', 'certificate_serial', 'max_uses', 'uses', 'expires_at', 'status', 'created_at', 'issuer_pem'] as const;
const auditColumns = 'id, at, actor, action, result, code, device_id, detail::text AS detail';
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

/** Runs statements on one connection: the pool for reads, the transaction's connection for writes. */
type Sql = <R extends QueryResultRow>(text: string, values?: readonly unknown[]) => Promise<QueryResult<R>>;

const statements = {
  getDevice: `SELECT ${list(deviceColumns)} FROM devices WHERE id = $1`,
  insertDevice: `INSERT INTO devices (${list(deviceColumns)}) VALUES ($1, $2, 'active', $3, $4, $5, $7, NULL, $6, $6)`,
  updateReportedAttributes: 'UPDATE devices SET reported_attributes = $2, updated_at = $3 WHERE id = $1',
  updateDeviceStatus: `UPDATE devices SET status = $2, status_reason = $3, updated_at = $4 WHERE id = $1 RETURNING ${list(deviceColumns)}`,

  getCertificate: `SELECT ${list(certificateColumns)} FROM certificates WHERE serial = $1`,
  // Oldest first, with the insertion sequence breaking ties between certificates issued in the same millisecond.
  listCertificates: `SELECT ${list(certificateColumns)} FROM certificates WHERE device_id = $1 ORDER BY issued_at, seq`,
  findCertificatesByPublicKey: `SELECT ${list(certificateColumns)} FROM certificates WHERE public_key_hash = $1 ORDER BY issued_at, seq`,
  /** Any certificate of another device, whatever its status: a revoked device's key may be compromised. */
  publicKeyHolder: 'SELECT device_id FROM certificates WHERE public_key_hash = $1 AND device_id <> $2 LIMIT 1',
  insertCertificate: `INSERT INTO certificates (${list(certificateColumns)})
    VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, NULL, NULL, $9) RETURNING ${list(certificateColumns)}`,
  revokeDeviceCertificates: `UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3 WHERE device_id = $1 AND status <> 'revoked'`,
  supersedeDeviceCertificates: `UPDATE certificates SET status = 'superseded', revoked_at = $2, revocation_reason = 'superseded' WHERE device_id = $1 AND status = 'active'`,
  // Renewals of the same certificate that lost the race: the first one used retires the others.
  supersedeSiblings: `UPDATE certificates SET status = 'superseded', revoked_at = $3, revocation_reason = 'superseded'
    WHERE replaces = $1 AND serial <> $2 AND status = 'active' RETURNING serial, device_id`,
  supersedeCertificate: `UPDATE certificates SET status = 'superseded', revoked_at = $2, revocation_reason = 'superseded'
    WHERE serial = $1 AND status = 'active' RETURNING serial, device_id`,
  // A suspended device's certificates are on hold (RFC 5280 §5.3.1 certificateHold) since its last status change.
  listRevoked: `SELECT serial, revoked_at, revocation_reason FROM certificates
    WHERE status IN ('revoked', 'superseded') AND not_after > $1
    UNION ALL
    SELECT c.serial, d.updated_at AS revoked_at, 'certificateHold' AS revocation_reason
    FROM certificates c JOIN devices d ON d.id = c.device_id
    WHERE c.status = 'active' AND d.status = 'suspended' AND c.not_after > $1
    ORDER BY revoked_at, serial`,
  activeCertificateForKey: `SELECT ${list(certificateColumns)} FROM certificates WHERE device_id = $1 AND public_key_hash = $2 AND status = 'active'
    ORDER BY issued_at DESC, seq DESC LIMIT 1`,
  // The broker's hot path: one round trip for everything admission needs. LEFT JOINs so that a missing
  // policy shows up as "no policy" (refused by the caller) rather than as an unknown certificate.
  getAdmission: `SELECT ${aliased('c', certificateColumns)}, ${aliased('d', deviceColumns)}, ${aliased('p', policyColumns)}, t.limits AS t_limits
    FROM certificates c
    JOIN devices d ON d.id = c.device_id
    LEFT JOIN templates t ON t.name = d.template
    LEFT JOIN policies p ON p.name = COALESCE(d.policy, t.policy)
    WHERE c.serial = $1`,

  getTemplate: `SELECT ${list(templateColumns)} FROM templates WHERE name = $1`,
  listTemplates: `SELECT ${list(templateColumns)} FROM templates ORDER BY name`,
  templateExists: 'SELECT 1 FROM templates WHERE name = $1',
  upsertTemplate: `INSERT INTO templates (${list(templateColumns)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
    ON CONFLICT (name) DO UPDATE SET
      policy = excluded.policy, validity_days = excluded.validity_days, key_types = excluded.key_types,
      require_allowlist = excluded.require_allowlist, allow_reenroll = excluded.allow_reenroll, limits = excluded.limits, updated_at = excluded.updated_at
    RETURNING ${list(templateColumns)}`,

  getPolicy: `SELECT ${list(policyColumns)} FROM policies WHERE name = $1`,
  listPolicies: `SELECT ${list(policyColumns)} FROM policies ORDER BY name`,
  policyExists: 'SELECT 1 FROM policies WHERE name = $1',
  upsertPolicy: `INSERT INTO policies (${list(policyColumns)}) VALUES ($1, $2, 1, $3)
    ON CONFLICT (name) DO UPDATE SET document = excluded.document, version = policies.version + 1, updated_at = excluded.updated_at
    RETURNING ${list(policyColumns)}`,

  getClaim: `SELECT ${list(claimColumns)} FROM claims WHERE id = $1`,
  getClaimBySerial: `SELECT ${list(claimColumns)} FROM claims WHERE certificate_serial = $1`,
  listClaimIssuers: `SELECT ${list(claimColumns)} FROM claims WHERE issuer_pem IS NOT NULL AND status = 'active' ORDER BY id`,
  listClaims: `SELECT ${list(claimColumns)} FROM claims ORDER BY created_at, id`,
  revokeClaim: `UPDATE claims SET status = 'revoked' WHERE id = $1 RETURNING ${list(claimColumns)}`,
  // Atomic use: the row changes only if a use is left, so racing enrollments can never exceed max_uses
  // (the CHECK on uses <= max_uses would refuse it anyway).
  consumeClaimUse: `UPDATE claims SET uses = uses + 1
    WHERE id = $1 AND status = 'active' AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)`,
  allowlisted: 'SELECT 1 FROM allowlist WHERE template = $1 AND serial = $2',
  allowlistAttributes: 'SELECT attributes FROM allowlist WHERE template = $1 AND serial = $2',
  // One statement for the whole list (allowlistRows made the serials distinct: one INSERT must not meet the
  // same key twice); then the attributes of the entries that carry some, new rows and listed ones alike.
  insertAllowlist: `INSERT INTO allowlist (template, serial, added_at)
    SELECT $1, serial, $3 FROM unnest($2::text[]) AS input (serial) ON CONFLICT DO NOTHING`,
  updateAllowlistAttributes: `UPDATE allowlist SET attributes = input.attributes::json
    FROM unnest($2::text[], $3::text[]) AS input (serial, attributes)
    WHERE allowlist.template = $1 AND allowlist.serial = input.serial AND input.attributes IS NOT NULL`,
  countAllowlist: 'SELECT count(*)::integer AS total FROM allowlist WHERE template = $1',
  insertClaim: `INSERT INTO claims (${list(claimColumns)}) VALUES ($1, $2, $3, $4, 0, $5, 'active', $6, $7) RETURNING ${list(claimColumns)}`,

  // The next id is the one after the highest ever handed out (audit_sequence survives removed rows), so ids
  // stay gapless and are never reused; the newest row's hash is what the new entry links to.
  auditChainTip: `SELECT GREATEST((SELECT last_id FROM audit_sequence), COALESCE((SELECT max(id) FROM audit_log), 0))::text AS last_id,
    (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) AS last_hash`,
  insertAudit: `WITH entry AS (
      INSERT INTO audit_log (id, at, actor, action, result, code, device_id, detail, prev_hash, hash)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id
    )
    UPDATE audit_sequence SET last_id = (SELECT id FROM entry)`,
  auditChainBatch: `SELECT ${auditColumns}, prev_hash, hash FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2`,
  // One statement, so both numbers come from the same snapshot.
  auditIds: `SELECT COALESCE((SELECT last_id FROM audit_sequence), 0)::text AS seq, COALESCE((SELECT max(id) FROM audit_log), 0)::text AS max_id`,

  getOperatorToken: `SELECT ${list(operatorTokenColumns)} FROM operator_tokens WHERE name = $1`,
  findOperatorToken: `SELECT ${list(operatorTokenColumns)} FROM operator_tokens WHERE token_hash = $1`,
  listOperatorTokens: `SELECT ${list(operatorTokenColumns)} FROM operator_tokens ORDER BY name`,
  insertOperatorToken: `INSERT INTO operator_tokens (name, role, token_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, NULL)
    RETURNING ${list(operatorTokenColumns)}`,
  // The first revocation date stands.
  revokeOperatorToken: `UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1 RETURNING ${list(operatorTokenColumns)}`,
} as const;

class PostgresRegistry implements Registry {
  readonly #pool: pg.Pool;
  readonly #clock: Clock;
  readonly #onError: (error: Error) => void;
  /** BEGIN, the write lock and the audit tip in one round trip (the key is a number we computed, safe to inline). */
  readonly #beginWrite: string;
  #closed = false;

  constructor(pool: pg.Pool, clock: Clock, schema: string, onError: (error: Error) => void) {
    this.#pool = pool;
    this.#clock = clock;
    this.#onError = onError;
    this.#beginWrite = `BEGIN; SELECT pg_advisory_xact_lock(${advisoryLockKey('write', schema)}); ${statements.auditChainTip}`;
  }

  /** Reads run on any pooled connection, each statement on a fresh snapshot (READ COMMITTED). */
  async #rows<R extends QueryResultRow>(text: string, values: readonly unknown[] = []): Promise<R[]> {
    // PostgreSQL text cannot hold NUL, so nothing stored contains one: such a lookup matches nothing
    // (as on SQLite) instead of failing with an encoding error.
    if (values.some((value) => typeof value === 'string' && value.includes('\u0000'))) return [];
    try {
      return (await this.#pool.query<R>(text, values as unknown[])).rows;
    } catch (error) {
      throw mapError(error);
    }
  }

  async #row<R extends QueryResultRow>(text: string, values: readonly unknown[] = []): Promise<R | undefined> {
    return (await this.#rows<R>(text, values))[0];
  }

  /**
   * Every write runs here, on one connection: BEGIN, the schema's write lock, the work, COMMIT. The lock
   * is taken before anything is read, so each write sees every write committed before it (READ COMMITTED
   * takes a fresh snapshot per statement) and none in between: check-then-write is as safe as in SQLite's
   * IMMEDIATE transactions. A throw rolls everything back, so a refusal leaves no row behind. A connection
   * that failed (server gone, timeout) is destroyed rather than returned to the pool.
   */
  async #write<T>(work: (sql: Sql, record: (entry: AuditInput) => Promise<AuditEntry>) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw mapError(error);
    }
    // While checked out, a connection that dies between statements emits 'error' on the client; the pool
    // listens only to idle ones. The failing statement rejects on its own; this only keeps the process up.
    const onClientError = (error: Error) => this.#onError(error);
    client.on('error', onClientError);
    let broken: Error | undefined;
    try {
      // One round trip: BEGIN, the lock, and the audit chain's tip, which nobody can move while we hold it.
      const results = (await client.query(this.#beginWrite)) as unknown as QueryResult<AuditTip>[];
      const tip = expectRow(results[2]?.rows[0]);
      const sql: Sql = (text, values) => client.query(text, values as unknown[]);
      const result = await work(sql, (entry) => this.#insertAudit(sql, tip, entry));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      if (error instanceof FleetgateError || error instanceof pg.DatabaseError) {
        // The server answered: the connection is sound and only the transaction must go.
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        });
      } else {
        // No answer (connection lost, timed out): closing the connection makes the server roll back.
        broken = error instanceof Error ? error : new Error(String(error));
      }
      throw mapError(error);
    } finally {
      client.removeListener('error', onClientError);
      client.release(broken);
    }
  }

  #now(): string {
    return this.#clock.now().toISOString();
  }

  /**
   * Appends one hash-chained entry after `tip`. Reading the tip and inserting after it must be atomic, or
   * two writers would link to the same predecessor and fork the chain: only ever called inside #write,
   * which read the tip after taking the lock every audit-writing transaction of every process takes first.
   */
  async #insertAudit(sql: Sql, tip: AuditTip, entry: AuditInput): Promise<AuditEntry> {
    const at = entry.at ?? this.#clock.now();
    const fields: StoredAuditFields = {
      id: Number(tip.last_id) + 1,
      at: at.toISOString(),
      actor: pgText(entry.actor),
      action: pgText(entry.action),
      result: entry.result,
      code: entry.code ?? null,
      deviceId: entry.deviceId === undefined ? null : pgText(entry.deviceId),
      // JSON.stringify escapes NUL and lone surrogates itself; the json column keeps this text as it is.
      detail: entry.detail === undefined ? null : JSON.stringify(entry.detail),
    };
    const prevHash = tip.last_hash ?? auditGenesisHash;
    const hash = auditEntryHash(prevHash, fields);
    await sql(statements.insertAudit, [fields.id, fields.at, fields.actor, fields.action, fields.result, fields.code, fields.deviceId, fields.detail, prevHash, hash]);
    // A second entry in the same transaction links to this one.
    tip.last_id = String(fields.id);
    tip.last_hash = hash;
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
    const row = await this.#row<DeviceRow>(statements.getDevice, [id]);
    return row === undefined ? undefined : toDevice(row);
  }

  async listDevices(query: DeviceQuery = {}): Promise<DeviceRecord[]> {
    const { where, values } = filters(query.limit, [
      ['status = $?', query.status],
      ['kind = $?', query.kind],
      ['template = $?', query.template],
      // A range on the primary key instead of LIKE: LIKE treats % and _ as wildcards. Ids are COLLATE "C",
      // which compares code points, and no character sorts after U+10FFFF: this bounds every id with the prefix.
      ['id >= $?', query.prefix || undefined],
      ['id < $?', query.prefix ? `${query.prefix}\u{10FFFF}` : undefined],
      ['id > $?', query.after],
    ]);
    const rows = await this.#rows<DeviceRow>(`SELECT ${list(deviceColumns)} FROM devices ${whereClause(where)} ORDER BY id LIMIT $${values.length}`, values);
    return rows.map(toDevice);
  }

  async registerCertificate(input: { device: NewDevice; certificate: NewCertificate; mustBeNew: boolean; audit: AuditInput }): Promise<CertificateRecord> {
    const { device, certificate, mustBeNew, audit } = input;
    // The id goes into topics and certificate names; the registry is the last gate before it is stored.
    const id = assertDeviceId(device.id);
    const attributes = assertAttributes(device.attributes);
    return this.#write(async (sql, record) => {
      const existing = (await sql<DeviceRow>(statements.getDevice, [id])).rows[0];
      if (existing !== undefined) {
        if (mustBeNew) throw new FleetgateError('DEVICE_EXISTS', { detail: { id } });
        if (existing.status === 'revoked') throw new FleetgateError('AUTH_DEVICE_REVOKED', { detail: { id } });
      } else {
        if ((await sql(statements.templateExists, [device.template])).rowCount === 0) {
          throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: device.template } });
        }
        if (device.policy != null && (await sql(statements.policyExists, [device.policy])).rowCount === 0) {
          throw new FleetgateError('POLICY_NOT_FOUND', { detail: { policy: device.policy } });
        }
      }
      if (certificate.replaces != null) {
        const replaced = (await sql<CertificateRow>(statements.getCertificate, [certificate.replaces])).rows[0];
        if (replaced === undefined || replaced.device_id !== id) throw new FleetgateError('CERT_NOT_FOUND', { detail: { serial: certificate.replaces } });
        if (replaced.status !== 'active') throw new FleetgateError('AUTH_CERT_REVOKED', { detail: { serial: certificate.replaces, status: replaced.status } });
      }
      await assertKeyFree(sql, certificate.publicKeyHash, id);

      const now = this.#now();
      if (existing === undefined) {
        await sql(statements.insertDevice, [id, device.kind, device.template, device.policy ?? null, JSON.stringify(attributes), now, JSON.stringify(assertAttributes(device.reportedAttributes))]);
      }
      const row = (await sql<CertificateRow>(statements.insertCertificate, certificateValues(id, certificate, certificate.replaces ?? null, now))).rows[0];
      await record({ ...audit, deviceId: audit.deviceId ?? id });
      return toCertificate(expectRow(row));
    });
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
    return this.#write(async (sql, record) => {
      const now = this.#clock.now();
      // Read under the write lock: a racing enrollment with the same claim either committed before
      // (its use is counted here) or waits until this one commits.
      const claimRow = (await sql<ClaimRow>(statements.getClaim, [claimId])).rows[0];
      if (claimRow === undefined) throw new FleetgateError('ENROLL_CLAIM_UNKNOWN', { detail: { claimId } });
      const claim = toClaim(claimRow);
      const existing = (await sql<DeviceRow>(statements.getDevice, [id])).rows[0];
      const listed = (await sql<{ attributes: Record<string, string> }>(statements.allowlistAttributes, [claim.template, id])).rows[0];
      const same = existing === undefined ? undefined : (await sql<CertificateRow>(statements.activeCertificateForKey, [id, certificate.publicKeyHash])).rows[0];
      // The rule is core's (decideEnrollment); this adapter only supplies the rows it read under the write lock.
      const decision = assertEnrollment(
        {
          claim,
          template: { requireAllowlist: input.requireAllowlist, allowReenroll: input.allowReenroll },
          serialAllowed: listed !== undefined,
          existing: existing === undefined ? undefined : { kind: existing.kind, status: existing.status, template: existing.template, policy: existing.policy },
          holdsSameKey: same !== undefined,
          now,
        },
        { claimId, id, template: claim.template },
      );
      if (decision.outcome === 'repeat' && same !== undefined) return { certificate: toCertificate(same), repeated: true };
      await assertKeyFree(sql, certificate.publicKeyHash, id);

      const stamp = now.toISOString();
      if (decision.outcome === 'enroll') {
        const attributes = { ...trusted, ...(listed?.attributes ?? {}) };
        await sql(statements.insertDevice, [id, 'device', claim.template, null, JSON.stringify(attributes), stamp, reported]);
      } else {
        await sql(statements.supersedeDeviceCertificates, [id, stamp]);
        await sql(statements.updateReportedAttributes, [id, reported, stamp]);
      }
      await sql(statements.consumeClaimUse, [claimId, stamp]);
      const row = (await sql<CertificateRow>(statements.insertCertificate, certificateValues(id, certificate, null, stamp))).rows[0];
      await record({ ...audit, deviceId: audit.deviceId ?? id, detail: { ...audit.detail, reenrolled: decision.outcome === 'reenroll' } });
      return { certificate: toCertificate(expectRow(row)), repeated: false };
    });
  }

  async supersedeReplaced(serial: string, audit: AuditInput): Promise<string | undefined> {
    const current = await this.#row<CertificateRow>(statements.getCertificate, [serial]);
    if (current?.replaces == null) return undefined;
    const replaces = current.replaces;
    return this.#write(async (sql, record) => {
      const now = this.#now();
      const changed = (await sql<{ serial: string; device_id: string }>(statements.supersedeCertificate, [replaces, now])).rows[0];
      const siblings = (await sql<{ serial: string; device_id: string }>(statements.supersedeSiblings, [replaces, serial, now])).rows;
      if (changed === undefined && siblings.length === 0) return undefined;
      const deviceId = audit.deviceId ?? changed?.device_id ?? siblings[0]?.device_id;
      await record({ ...audit, ...(deviceId ? { deviceId } : {}), detail: { ...audit.detail, superseded: replaces, by: serial, ...(siblings.length > 0 ? { siblings: siblings.map((row) => row.serial) } : {}) } });
      return changed === undefined ? undefined : replaces;
    });
  }

  async importAllowlist(template: string, entries: readonly AllowlistEntry[], audit: AuditInput): Promise<{ added: number; total: number }> {
    const rows = allowlistRows(entries);
    const serials = rows.map((row) => row.serial);
    return this.#write(async (sql, record) => {
      if ((await sql(statements.templateExists, [template])).rowCount === 0) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template } });
      const added = (await sql(statements.insertAllowlist, [template, serials, this.#now()])).rowCount ?? 0;
      if (rows.some((row) => row.attributes !== undefined)) {
        await sql(statements.updateAllowlistAttributes, [template, serials, rows.map((row) => (row.attributes === undefined ? null : JSON.stringify(row.attributes)))]);
      }
      const total = (await sql<{ total: number }>(statements.countAllowlist, [template])).rows[0]?.total ?? 0;
      await record({ ...audit, detail: { ...audit.detail, template, added, total, withAttributes: rows.filter((row) => row.attributes !== undefined).length } });
      return { added, total };
    });
  }

  async isSerialAllowed(template: string, serial: string): Promise<boolean> {
    return (await this.#row(statements.allowlisted, [template, serial])) !== undefined;
  }

  async setDeviceStatus(input: { id: string; status: DeviceStatus; reason: string | null; audit: AuditInput }): Promise<DeviceRecord> {
    const { id, status, reason, audit } = input;
    return this.#write(async (sql, record) => {
      const current = (await sql<DeviceRow>(statements.getDevice, [id])).rows[0];
      if (current === undefined) throw new FleetgateError('DEVICE_NOT_FOUND', { detail: { id } });
      let row = current;
      if (current.status === 'revoked') {
        // Revocation is final. Revoking again changes nothing (the first reason and date stand) but is audited.
        if (status !== 'revoked') throw new FleetgateError('AUTH_DEVICE_REVOKED', { detail: { id, requested: status } });
      } else {
        const now = this.#now();
        row = expectRow((await sql<DeviceRow>(statements.updateDeviceStatus, [id, status, reason, now])).rows[0]);
        if (status === 'revoked') await sql(statements.revokeDeviceCertificates, [id, now, reason ?? 'unspecified']);
      }
      await record({ ...audit, deviceId: audit.deviceId ?? id });
      return toDevice(row);
    });
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const row = await this.#row<CertificateRow>(statements.getCertificate, [serial]);
    return row === undefined ? undefined : toCertificate(row);
  }

  async listCertificates(deviceId: string): Promise<CertificateRecord[]> {
    return (await this.#rows<CertificateRow>(statements.listCertificates, [deviceId])).map(toCertificate);
  }

  async findCertificatesByPublicKey(publicKeyHash: string): Promise<CertificateRecord[]> {
    return (await this.#rows<CertificateRow>(statements.findCertificatesByPublicKey, [publicKeyHash])).map(toCertificate);
  }

  async listRevokedCertificates(now: Date): Promise<{ serial: string; revokedAt: Date; reason: string }[]> {
    const rows = await this.#rows<{ serial: string; revoked_at: Date; revocation_reason: string | null }>(statements.listRevoked, [now.toISOString()]);
    return rows.map((row) => ({ serial: row.serial, revokedAt: row.revoked_at, reason: row.revocation_reason ?? 'unspecified' }));
  }

  async getAdmission(certificateSerial: string): Promise<Admission | undefined> {
    const row = await this.#row<Record<string, unknown>>(statements.getAdmission, [certificateSerial]);
    if (row === undefined) return undefined;
    const policy = unprefix<PolicyRow | { name: null }>(row, 'p');
    return {
      certificate: toCertificate(unprefix<CertificateRow>(row, 'c')),
      device: toDevice(unprefix<DeviceRow>(row, 'd')),
      policy: policy.name === null ? undefined : toPolicy(policy as PolicyRow),
      limits: (row.t_limits as TemplateLimits | null) ?? {},
    };
  }

  async getTemplate(name: string): Promise<TemplateRecord | undefined> {
    const row = await this.#row<TemplateRow>(statements.getTemplate, [name]);
    return row === undefined ? undefined : toTemplate(row);
  }

  async listTemplates(): Promise<TemplateRecord[]> {
    return (await this.#rows<TemplateRow>(statements.listTemplates)).map(toTemplate);
  }

  async putTemplate(template: NewTemplate, audit: AuditInput): Promise<TemplateRecord> {
    assertTemplate(template);
    return this.#write(async (sql, record) => {
      if ((await sql(statements.policyExists, [template.policy])).rowCount === 0) {
        throw new FleetgateError('POLICY_NOT_FOUND', { detail: { policy: template.policy, template: template.name } });
      }
      const row = (
        await sql<TemplateRow>(statements.upsertTemplate, [
          template.name,
          template.policy,
          template.validityDays,
          JSON.stringify(template.keyTypes),
          template.requireAllowlist,
          template.allowReenroll,
          JSON.stringify(template.limits ?? {}),
          this.#now(),
        ])
      ).rows[0];
      await record(audit);
      return toTemplate(expectRow(row));
    });
  }

  async getPolicy(name: string): Promise<PolicyRecord | undefined> {
    const row = await this.#row<PolicyRow>(statements.getPolicy, [name]);
    return row === undefined ? undefined : toPolicy(row);
  }

  async listPolicies(): Promise<PolicyRecord[]> {
    return (await this.#rows<PolicyRow>(statements.listPolicies)).map(toPolicy);
  }

  async putPolicy(name: string, document: PolicyDocument, audit: AuditInput): Promise<PolicyRecord> {
    // Re-validated here because a stored policy that does not parse would lock every device using it out.
    const parsed = parsePolicyDocument(document);
    return this.#write(async (sql, record) => {
      const row = (await sql<PolicyRow>(statements.upsertPolicy, [name, JSON.stringify(parsed), this.#now()])).rows[0];
      await record(audit);
      return toPolicy(expectRow(row));
    });
  }

  async createClaim(claim: NewClaim, audit: AuditInput): Promise<ClaimRecord> {
    return this.#write(async (sql, record) => {
      if ((await sql(statements.templateExists, [claim.template])).rowCount === 0) {
        throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: claim.template } });
      }
      const row = (
        await sql<ClaimRow>(statements.insertClaim, [
          claim.id, claim.template, claim.certificateSerial, claim.maxUses, claim.expiresAt.toISOString(), this.#now(), claim.issuerPem ?? null,
        ])
      ).rows[0];
      await record(audit);
      return toClaim(expectRow(row));
    });
  }

  async getClaim(id: string): Promise<ClaimRecord | undefined> {
    const row = await this.#row<ClaimRow>(statements.getClaim, [id]);
    return row === undefined ? undefined : toClaim(row);
  }

  async getClaimByCertificateSerial(serial: string): Promise<ClaimRecord | undefined> {
    const row = await this.#row<ClaimRow>(statements.getClaimBySerial, [serial]);
    return row === undefined ? undefined : toClaim(row);
  }

  async listClaimIssuers(): Promise<ClaimRecord[]> {
    return (await this.#rows<ClaimRow>(statements.listClaimIssuers)).map(toClaim);
  }

  async listClaims(): Promise<ClaimRecord[]> {
    return (await this.#rows<ClaimRow>(statements.listClaims)).map(toClaim);
  }

  async revokeClaim(id: string, audit: AuditInput): Promise<ClaimRecord> {
    return this.#write(async (sql, record) => {
      const row = (await sql<ClaimRow>(statements.revokeClaim, [id])).rows[0];
      if (row === undefined) throw new FleetgateError('CLAIM_NOT_FOUND', { detail: { claimId: id } });
      await record({ ...audit, detail: { ...audit.detail, claimId: id } });
      return toClaim(row);
    });
  }

  async createOperatorToken(input: { name: string; role: OperatorRole; tokenHash: string; audit: AuditInput }): Promise<OperatorTokenRecord> {
    const { name, role, tokenHash, audit } = input;
    assertOperatorToken(name, role, tokenHash);
    return this.#write(async (sql, record) => {
      if ((await sql(statements.getOperatorToken, [name])).rowCount !== 0) {
        throw new FleetgateError('OPERATOR_TOKEN_EXISTS', { detail: { name } });
      }
      const row = (await sql<OperatorTokenRow>(statements.insertOperatorToken, [name, role, tokenHash, this.#now()])).rows[0];
      await record({ ...audit, detail: { ...audit.detail, name, role } });
      return toOperatorToken(expectRow(row));
    });
  }

  async findOperatorToken(tokenHash: string): Promise<OperatorTokenRecord | undefined> {
    const row = await this.#row<OperatorTokenRow>(statements.findOperatorToken, [tokenHash]);
    return row === undefined ? undefined : toOperatorToken(row);
  }

  async listOperatorTokens(): Promise<OperatorTokenRecord[]> {
    return (await this.#rows<OperatorTokenRow>(statements.listOperatorTokens)).map(toOperatorToken);
  }

  async revokeOperatorToken(name: string, audit: AuditInput): Promise<OperatorTokenRecord> {
    return this.#write(async (sql, record) => {
      const before = (await sql<OperatorTokenRow>(statements.getOperatorToken, [name])).rows[0];
      if (before === undefined) throw new FleetgateError('OPERATOR_TOKEN_NOT_FOUND', { detail: { name } });
      const row = expectRow((await sql<OperatorTokenRow>(statements.revokeOperatorToken, [name, this.#now()])).rows[0]);
      await record({ ...audit, detail: { ...audit.detail, name, role: row.role, alreadyRevoked: before.revoked_at !== null } });
      return toOperatorToken(row);
    });
  }

  async appendAudit(entry: AuditInput): Promise<AuditEntry> {
    return this.#write((_sql, record) => record(entry));
  }

  async queryAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const { where, values } = filters(query.limit, [
      ['device_id = $?', query.deviceId],
      ['actor = $?', query.actor],
      ['action = $?', query.action],
      ['result = $?', query.result],
      // Half-open [since, until): consecutive windows neither overlap nor leave gaps.
      ['at >= $?', query.since?.toISOString()],
      ['at < $?', query.until?.toISOString()],
      ['id > $?', query.afterId],
    ]);
    // Ordered by id, not by `at`: callers may supply `at`, but ids are the order entries were written in.
    const order = query.afterId === undefined ? 'DESC' : 'ASC';
    const rows = await this.#rows<AuditRow>(`SELECT ${auditColumns} FROM audit_log ${whereClause(where)} ORDER BY id ${order} LIMIT $${values.length}`, values);
    return rows.map((row) =>
      toAuditEntry({
        id: Number(row.id),
        at: row.at,
        actor: row.actor,
        action: row.action,
        result: row.result,
        ...(row.code === null ? {} : { code: row.code }),
        ...(row.device_id === null ? {} : { deviceId: row.device_id }),
        ...(row.detail === null ? {} : { detail: JSON.parse(row.detail) as Record<string, unknown> }),
      }),
    );
  }

  async verifyAudit(options: { anchor?: AuditAnchor } = {}): Promise<AuditVerification> {
    const walker = new AuditChainWalker(options.anchor);
    for (;;) {
      const rows = await this.#rows<ChainedAuditRow>(statements.auditChainBatch, [walker.lastId, verifyBatchSize]);
      for (const row of rows) {
        const broken = walker.check({
          id: Number(row.id),
          at: row.at.toISOString(),
          actor: row.actor,
          action: row.action,
          result: row.result,
          code: row.code ?? null,
          deviceId: row.device_id,
          detail: row.detail,
          prevHash: row.prev_hash,
          hash: row.hash,
        });
        if (broken !== undefined) return broken;
      }
      if (rows.length < verifyBatchSize) {
        const ids = expectRow(await this.#row<{ seq: string; max_id: string }>(statements.auditIds));
        // Entries appended while we walked are checked too; otherwise this was the end of the log.
        if (Number(ids.max_id) <= walker.lastId) return walker.finish(Math.max(Number(ids.seq), Number(ids.max_id)));
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}

/** The same device may present its key again (lost reply, renewal with the same key); another may not. */
async function assertKeyFree(sql: Sql, publicKeyHash: string, deviceId: string): Promise<void> {
  const holder = (await sql<{ device_id: string }>(statements.publicKeyHolder, [publicKeyHash, deviceId])).rows[0];
  if (holder !== undefined) throw new FleetgateError('PKI_PUBLIC_KEY_IN_USE', { detail: { publicKeyHash, boundTo: holder.device_id } });
}

function certificateValues(deviceId: string, certificate: NewCertificate, replaces: string | null, now: string): unknown[] {
  return [
    certificate.serial, deviceId, certificate.fingerprint, certificate.publicKeyHash, certificate.notBefore.toISOString(), certificate.notAfter.toISOString(),
    certificate.pem, now, replaces,
  ];
}

/**
 * Text as PostgreSQL will give it back: well-formed (storableText) and without NUL, which a text column
 * cannot hold. NUL becomes U+FFFD, so the hash is computed over what is stored. (SQLite keeps NUL.)
 */
function pgText(value: string): string {
  return storableText(value).replaceAll('\u0000', '\ufffd');
}

/**
 * Keeps the conditions whose value is set, numbering their `$?` placeholders; the limit is the last value.
 */
function filters(limit: number | undefined, candidates: ReadonlyArray<readonly [condition: string, value: unknown]>) {
  const where: string[] = [];
  const values: unknown[] = [];
  for (const [condition, value] of candidates) {
    if (value === undefined) continue;
    values.push(value);
    where.push(condition.replace('$?', `$${values.length}`));
  }
  values.push(clampLimit(limit));
  return { where, values };
}

function whereClause(conditions: readonly string[]): string {
  return conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
}

/** RETURNING on an INSERT or an UPDATE of a row just read always yields it; anything else is a bug. */
function expectRow<T>(row: T | undefined): T {
  if (row === undefined) throw new FleetgateError('INTERNAL', { detail: { reason: 'write returned no row' } });
  return row;
}

/**
 * Database refusals that correspond to a check the SQLite adapter makes itself get that check's code. The
 * write lock makes them unreachable by races; they remain as a second line (a row written by hand, a
 * future code path). Anything else is passed on as it is: the edges answer INTERNAL, as for SQLite.
 */
const constraintCodes: Readonly<Record<string, FleetgateError['code']>> = {
  devices_pkey: 'DEVICE_EXISTS',
  operator_tokens_pkey: 'OPERATOR_TOKEN_EXISTS',
  devices_template_fkey: 'TEMPLATE_NOT_FOUND',
  claims_template_fkey: 'TEMPLATE_NOT_FOUND',
  allowlist_template_fkey: 'TEMPLATE_NOT_FOUND',
  devices_policy_fkey: 'POLICY_NOT_FOUND',
  templates_policy_fkey: 'POLICY_NOT_FOUND',
};

function mapError(error: unknown): unknown {
  if (!(error instanceof pg.DatabaseError)) return error;
  // 23505 unique_violation, 23503 foreign_key_violation.
  const code = (error.code === '23505' || error.code === '23503') && error.constraint !== undefined ? constraintCodes[error.constraint] : undefined;
  if (code !== undefined) return new FleetgateError(code, { detail: { constraint: error.constraint }, cause: error });
  // 22021: a NUL in text (names are free-form in a few places); SQLite would have stored it.
  if (error.code === '22021') return new FleetgateError('REQUEST_INVALID', { message: 'Text values must not contain NUL characters.', cause: error });
  return error;
}

function toOperatorToken(row: OperatorTokenRow): OperatorTokenRecord {
  return { name: row.name, role: row.role, createdAt: row.created_at, revokedAt: row.revoked_at };
}

function toDevice(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    kind: row.kind,
    status: row.status,
    template: row.template,
    policy: row.policy,
    attributes: row.attributes,
    reportedAttributes: row.reported_attributes,
    statusReason: row.status_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toCertificate(row: CertificateRow): CertificateRecord {
  return {
    serial: row.serial,
    deviceId: row.device_id,
    fingerprint: row.fingerprint,
    publicKeyHash: row.public_key_hash,
    notBefore: row.not_before,
    notAfter: row.not_after,
    status: row.status,
    pem: row.pem,
    issuedAt: row.issued_at,
    revokedAt: row.revoked_at,
    revocationReason: row.revocation_reason,
    replaces: row.replaces,
  };
}

function toTemplate(row: TemplateRow): TemplateRecord {
  return {
    name: row.name,
    policy: row.policy,
    validityDays: row.validity_days,
    keyTypes: row.key_types,
    requireAllowlist: row.require_allowlist,
    allowReenroll: row.allow_reenroll,
    limits: row.limits,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toPolicy(row: PolicyRow): PolicyRecord {
  // Validated by parsePolicyDocument before it was written.
  return { name: row.name, document: row.document, version: row.version, updatedAt: row.updated_at };
}

function toClaim(row: ClaimRow): ClaimRecord {
  return {
    id: row.id,
    template: row.template,
    certificateSerial: row.certificate_serial,
    maxUses: row.max_uses,
    uses: row.uses,
    expiresAt: row.expires_at,
    status: row.status,
    createdAt: row.created_at,
    issuerPem: row.issuer_pem,
  };
}
