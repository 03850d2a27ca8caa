import { CompiledQuery, type Kysely, type RawBuilder, type Selectable, sql } from 'kysely';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  allowlistRows,
  assertAttributes,
  assertDeviceId,
  assertEnrollment,
  assertOperatorToken,
  assertTemplate,
  caInUse,
  certificateRecordingRefusal,
  type Clock,
  decideStatusChange,
  effectivePolicyName,
  FleetgateError,
  keyBindingRefusal,
  parsePolicyDocument,
  planRotation,
  type PolicyDocument,
  formatRotationSelector,
  refuseIf,
  type RotationCampaignAction,
  rotationCampaignTransition,
  type RotationCampaignState,
  type RotationSelector,
} from '../core/index.ts';
import { auditEntryHash, AuditChainWalker, auditGenesisHash, type StoredAuditFields } from './audit-chain.ts';
import { AuditQueue, type QueuedAudit } from './audit-queue.ts';
import { clampLimit, storedAuditEntry } from './registry-input.ts';
import type {
  Admission,
  AllowlistEntry,
  AuditAnchor,
  AuditEntry,
  AuditInput,
  AuditQuery,
  AuditVerification,
  CaChange,
  CaUsage,
  CertificateGroup,
  CertificateAuthorityRecord,
  CertificateRecord,
  ClaimRecord,
  DeviceQuery,
  DeviceRecord,
  DeviceStatus,
  EnrollWithClaimInput,
  FleetCheckFacts,
  FleetCheckFactsQuery,
  NewCertificate,
  NewCertificateAuthority,
  NewClaim,
  NewDevice,
  NewTemplate,
  OperatorRole,
  OperatorTokenRecord,
  PolicyRecord,
  Registry,
  RotationCampaignRecord,
  RotationDeviceQuery,
  RotationDeviceRow,
  RotationDispatch,
  TemplateRecord,
} from './registry-port.ts';
import { campaignRecords, deviceRows, dispatchPending, insertSelection, pendingForDevice } from './rotation-queries.ts';
import { operatorRoles } from './registry-port.ts';
import { type AuditRow, fromJson, type StorageDialect, type Tables, toDate, toIsoText } from './storage-dialect.ts';

type Db = Kysely<Tables>;
type Row<T extends keyof Tables> = Selectable<Tables[T]>;
/** Appends one hash-chained audit entry inside the current write. */
type AuditWriter = (entry: AuditInput) => Promise<AuditEntry>;

/** Audit rows hashed per step of verifyAudit; the event loop (broker, API) runs in between. */
const verifyBatchSize = 2_000;
/** Rows per INSERT of an allow-list import, well under both databases' limits on bound parameters. */
const insertBatchSize = 500;

const auditColumns = ['id', 'at', 'actor', 'action', 'result', 'code', 'device_id', sql<string | null>`CAST(detail AS TEXT)`.as('detail')] as const;
export const deviceColumns = ['id', 'kind', 'status', 'template', 'policy', 'status_reason', 'attributes', 'reported_attributes', 'created_at', 'updated_at'] as const;
const policyColumns = ['name', 'document', 'version', 'updated_at'] as const;
// token_hash is deliberately not among them: it is looked up by, never read back.
const operatorTokenColumns = ['name', 'role', 'created_at', 'revoked_at'] as const;

/**
 * The registry, written once for SQLite and PostgreSQL (the differences are in the StorageDialect). It
 * holds transactions and rows; what may be written is decided by core's rules (core/registry-rules.ts,
 * core/enrollment-rules.ts) on the rows read inside the write transaction.
 */
/**
 * The CONNECT admission read (getAdmission): the certificate, its device (`d_…`), the device's template,
 * both candidate policies, the device's own (`dp_…`) and its template's (`tp_…`), and the state of the CA
 * that signed the certificate. Exported for
 * bench/registry-admission.ts, which measures building it per call against compiling it once.
 */
export function admissionStatement(db: Kysely<Tables>, certificateSerial: string) {
  return db
    .selectFrom('certificates as c')
    .innerJoin('devices as d', 'd.id', 'c.device_id')
    .leftJoin('templates as t', 't.name', 'd.template')
    .leftJoin('policies as dp', 'dp.name', 'd.policy')
    .leftJoin('policies as tp', 'tp.name', 't.policy')
    .leftJoin('certificate_authorities as ca', 'ca.id', 'c.issuer_ca')
    .selectAll('c')
    .select('ca.state as issuer_state')
    .select(deviceColumns.map((column) => sql.ref(`d.${column}`).as(`d_${column}`)))
    .select(['t.policy as template_policy', 't.limits as template_limits'])
    .select(policyColumns.flatMap((column) => [sql.ref(`dp.${column}`).as(`dp_${column}`), sql.ref(`tp.${column}`).as(`tp_${column}`)]))
    .where('c.serial', '=', certificateSerial);
}

export class SqlRegistry implements Registry {
  readonly #dialect: StorageDialect;
  readonly #db: Db;
  readonly #clock: Clock;
  #closed = false;
  /** getAdmission's statement, compiled on first use; only the serial changes between calls. */
  #admission: CompiledQuery | undefined;
  readonly #queue = new AuditQueue(() => this.#flushQueued());

  constructor(dialect: StorageDialect, clock: Clock) {
    this.#dialect = dialect;
    this.#db = dialect.db;
    this.#clock = clock;
  }

  /**
   * Every write runs here, on one connection: the dialect's BEGIN with the write lock, the work, COMMIT. A
   * throw rolls everything back, so a refusal leaves no row behind. The audit chain's tip is read under the
   * lock, so no other writer can move it before this one commits. Audit entries queued by queueAudit before
   * this write was called (and not written yet) go first, in the same transaction: an entry queued before a
   * write is always before it in the chain. (Entries queued after it was called wait for the next write; on
   * SQLite, whose writes of a process run in call order, the chain is then exactly the order of the calls.
   * On PostgreSQL concurrent writes take the lock in any order, as before.) `flush`: the write exists only
   * for queued entries (audit-queue.ts).
   */
  async #write<T>(work: (db: Db, record: AuditWriter) => Promise<T>, options: { flush?: boolean } = {}): Promise<T> {
    // Queued entries up to here go before this write's rows; those queued after it was called, after them.
    const queuedBefore = options.flush ? Number.POSITIVE_INFINITY : this.#queue.queued;
    let drained = false;
    try {
      return await this.#dialect.queueWrite(() => this.#db.connection().execute(async (db) => {
        let queued: readonly QueuedAudit[] = [];
        try {
          const begun = await this.#dialect.beginWrite(db);
          const tip = { id: Number(begun.last_id), hash: begun.last_hash ?? auditGenesisHash };
          queued = this.#queue.drain(queuedBefore);
          drained = true;
          if (queued.length > 0) await this.#insertAudits(db, tip, queued.map((entry) => entry.fields));
          const result = await work(db, async (entry) => storedAuditEntry((await this.#insertAudits(db, tip, [this.#auditFields(entry)]))[0] as StoredAuditFields));
          await db.executeQuery(CompiledQuery.raw('COMMIT'));
          this.#queue.written(queued);
          return result;
        } catch (error) {
          // Put back before the lock is released, so the next writer of this process drains them in order.
          if (!options.flush) this.#queue.putBack(queued);
          await db.executeQuery(CompiledQuery.raw('ROLLBACK')).catch(() => undefined);
          if (options.flush) this.#queue.failed(queued, this.#dialect.mapError(error));
          throw error;
        }
      }));
    } catch (error) {
      const mapped = this.#dialect.mapError(error);
      // A flush that failed before it could drain (no connection, database closed): what is queued would
      // fail the same way, and a queue no flush can drain would hang close() and grow without end.
      if (options.flush && !drained) this.#queue.failed(this.#queue.drain(), mapped);
      throw mapped;
    }
  }

  /** The queue's flush: a write of its own; a failure is reported to each entry's caller, never thrown. */
  async #flushQueued(): Promise<void> {
    await this.#write(async () => undefined, { flush: true }).catch(() => undefined);
  }

  /** What an entry stores but its id: fixed when it is recorded or queued (`at`: when it happened). */
  #auditFields(entry: AuditInput): Omit<StoredAuditFields, 'id'> {
    const text = this.#dialect.storableText;
    return {
      at: (entry.at ?? this.#clock.now()).toISOString(),
      actor: text(entry.actor),
      action: text(entry.action),
      result: entry.result,
      code: entry.code ?? null,
      deviceId: entry.deviceId === undefined ? null : text(entry.deviceId),
      // JSON.stringify escapes NUL and lone surrogates itself, so this text is stored as it is.
      detail: entry.detail === undefined ? null : JSON.stringify(entry.detail),
    };
  }

  /** Appends entries after `tip` (ids are gapless: the one after the highest ever handed out), each chained to the one before, and moves the tip. */
  async #insertAudits(db: Db, tip: { id: number; hash: string }, entries: readonly Omit<StoredAuditFields, 'id'>[]): Promise<StoredAuditFields[]> {
    const stored: StoredAuditFields[] = [];
    const rows: AuditRow[] = [];
    let { id, hash: prevHash } = tip;
    for (const entry of entries) {
      const fields: StoredAuditFields = { id: (id += 1), ...entry };
      const hash = auditEntryHash(prevHash, fields);
      const { deviceId, ...columns } = fields;
      rows.push({ ...columns, result: entry.result as AuditRow['result'], device_id: deviceId, prev_hash: prevHash, hash });
      stored.push(fields);
      prevHash = hash;
    }
    await this.#dialect.insertAudit(db, rows);
    tip.id = id;
    tip.hash = prevHash;
    return stored;
  }

  #now(): string {
    return this.#clock.now().toISOString();
  }

  // devices and certificates

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return mapped(await deviceRow(this.#db, id), toDevice);
  }

  async listDevices(query: DeviceQuery = {}): Promise<DeviceRecord[]> {
    const { status, kind, template, prefix, after } = query;
    const rows = await this.#db
      .selectFrom('devices')
      .selectAll()
      .$if(status !== undefined, (q) => q.where('status', '=', status!))
      .$if(kind !== undefined, (q) => q.where('kind', '=', kind!))
      .$if(template !== undefined, (q) => q.where('template', '=', template!))
      // A range on the primary key instead of LIKE: LIKE treats % and _ as wildcards (and is case-insensitive
      // in SQLite). Ids compare by code point (BINARY, COLLATE "C"), and no character sorts after U+10FFFF.
      .$if(Boolean(prefix), (q) => q.where('id', '>=', prefix!).where('id', '<', `${prefix}\u{10FFFF}`))
      .$if(after !== undefined, (q) => q.where('id', '>', after!))
      .orderBy('id')
      .limit(clampLimit(query.limit))
      .execute();
    return rows.map(toDevice);
  }

  async registerCertificate(input: { device: NewDevice; certificate: NewCertificate; mustBeNew: boolean; audit: AuditInput; onlySuccessor?: boolean }): Promise<CertificateRecord> {
    const { device, certificate, mustBeNew, audit } = input;
    // The id goes into topics and certificate names; the registry is the last gate before it is stored.
    const id = assertDeviceId(device.id);
    const attributes = assertAttributes(device.attributes);
    const reported = assertAttributes(device.reportedAttributes);
    return this.#write(async (db, record) => {
      const existing = await deviceRow(db, id);
      const replaced = certificate.replaces == null ? undefined : await certificateRow(db, certificate.replaces);
      refuseIf(
        certificateRecordingRefusal({
          id,
          existing,
          mustBeNew,
          template: { name: device.template, exists: existing !== undefined || (await named(db, 'templates', device.template)) },
          policy: device.policy == null ? null : { name: device.policy, exists: existing !== undefined || (await named(db, 'policies', device.policy)) },
          replaces:
            certificate.replaces == null
              ? null
              : {
                  serial: certificate.replaces,
                  found: replaced && { deviceId: replaced.device_id, status: replaced.status },
                  ...(input.onlySuccessor === true ? { successors: await successorCount(db, id, certificate.replaces) } : {}),
                },
          publicKeyHash: certificate.publicKeyHash,
          keyHolder: await this.#otherKeyHolder(db, certificate.publicKeyHash, id),
        }),
      );
      const now = this.#now();
      if (existing === undefined) {
        await insertDevice(db, { id, kind: device.kind, template: device.template, policy: device.policy ?? null, attributes, reported, enrolledBy: null, now });
      }
      const row = await insertCertificate(db, id, certificate, certificate.replaces ?? null, now);
      await record({ ...audit, deviceId: audit.deviceId ?? id });
      return toCertificate(row);
    });
  }

  /** Another identity holding any certificate for this key, whatever its status (core keyBindingRefusal). */
  async #otherKeyHolder(db: Db, publicKeyHash: string, deviceId: string): Promise<string | undefined> {
    const row = await db.selectFrom('certificates').select('device_id').where('public_key_hash', '=', publicKeyHash).where('device_id', '<>', deviceId).limit(1).executeTakeFirst();
    return row?.device_id;
  }

  async enrollWithClaim(input: EnrollWithClaimInput): Promise<{ certificate: CertificateRecord; repeated: boolean }> {
    const { claimId, device, certificate, audit } = input;
    const id = assertDeviceId(device.id);
    const trusted = assertAttributes(device.attributes);
    const reported = assertAttributes(device.reportedAttributes);
    return this.#write(async (db, record) => {
      const now = this.#clock.now();
      // Read under the write lock: a racing enrollment with the same claim either committed before (its use
      // is counted here) or waits until this one commits.
      const claimRow = await db.selectFrom('claims').selectAll().where('id', '=', claimId).executeTakeFirst();
      if (claimRow === undefined) throw new FleetgateError('ENROLL_CLAIM_UNKNOWN', { detail: { claimId } });
      const claim = toClaim(claimRow);
      const existing = await deviceRow(db, id);
      const listed = await db.selectFrom('allowlist').select('attributes').where('template', '=', claim.template).where('serial', '=', id).executeTakeFirst();
      const same = existing === undefined ? undefined : await this.#certificates(db).where('device_id', '=', id).where('public_key_hash', '=', certificate.publicKeyHash).where('status', '=', 'active').orderBy('issued_at', 'desc').orderBy(sql.ref(this.#dialect.insertionOrder), 'desc').limit(1).executeTakeFirst();
      // The rule is core's (decideEnrollment); this only supplies the rows read under the write lock.
      const decision = assertEnrollment(
        {
          claim,
          template: { requireAllowlist: input.requireAllowlist, allowReenroll: input.allowReenroll },
          serialAllowed: listed !== undefined,
          existing,
          holdsSameKey: same !== undefined,
          now,
        },
        { claimId, id, template: claim.template },
      );
      if (decision.outcome === 'repeat' && same !== undefined) return { certificate: toCertificate(same), repeated: true };
      refuseIf(keyBindingRefusal(certificate.publicKeyHash, await this.#otherKeyHolder(db, certificate.publicKeyHash, id)));

      const stamp = now.toISOString();
      if (decision.outcome === 'enroll') {
        const attributes = { ...trusted, ...(listed === undefined ? {} : fromJson<Record<string, string>>(listed.attributes)) };
        await insertDevice(db, { id, kind: 'device', template: claim.template, policy: null, attributes, reported, enrolledBy: claimId, now: stamp });
      } else {
        await supersede(db, stamp).where('device_id', '=', id).where('status', '=', 'active').execute();
        await db.updateTable('devices').set({ reported_attributes: JSON.stringify(reported), enrolled_by: claimId, updated_at: stamp }).where('id', '=', id).execute();
      }
      // The decision above found a use left; the CHECK on uses <= max_uses is the second line.
      await db.updateTable('claims').set({ uses: sql`uses + 1` }).where('id', '=', claimId).execute();
      const row = await insertCertificate(db, id, certificate, null, stamp);
      await record({ ...audit, deviceId: audit.deviceId ?? id, detail: { ...audit.detail, reenrolled: decision.outcome === 'reenroll' } });
      return { certificate: toCertificate(row), repeated: false };
    });
  }

  async getEnrollingClaim(deviceId: string): Promise<string | undefined> {
    return (await this.#db.selectFrom('devices').select('enrolled_by').where('id', '=', deviceId).executeTakeFirst())?.enrolled_by ?? undefined;
  }

  async supersedeReplaced(serial: string, audit: AuditInput): Promise<string | undefined> {
    const replaces = (await certificateRow(this.#db, serial))?.replaces;
    if (replaces == null) return undefined;
    return this.#write(async (db, record) => {
      const now = this.#now();
      const changed = await supersede(db, now).where('serial', '=', replaces).where('status', '=', 'active').returning(['serial', 'device_id']).executeTakeFirst();
      // Renewals of the same certificate that lost the race: the first one used retires the others.
      const siblings = await supersede(db, now).where('replaces', '=', replaces).where('serial', '<>', serial).where('status', '=', 'active').returning(['serial', 'device_id']).execute();
      if (changed === undefined && siblings.length === 0) return undefined;
      const deviceId = audit.deviceId ?? changed?.device_id ?? siblings[0]?.device_id;
      const detail = { ...audit.detail, superseded: replaces, by: serial, ...(siblings.length > 0 ? { siblings: siblings.map((row) => row.serial) } : {}) };
      await record({ ...audit, ...(deviceId ? { deviceId } : {}), detail });
      return changed === undefined ? undefined : replaces;
    });
  }

  async setDeviceStatus(input: { id: string; status: DeviceStatus; reason: string | null; audit: AuditInput }): Promise<DeviceRecord> {
    const { id, status, reason, audit } = input;
    return this.#write(async (db, record) => {
      let row = await deviceRow(db, id);
      if (row === undefined) throw new FleetgateError('DEVICE_NOT_FOUND', { detail: { id } });
      const change = decideStatusChange(id, row.status, status);
      if (change.outcome === 'refused') refuseIf(change.refusal);
      if (change.outcome === 'write') {
        const now = this.#now();
        row = await db.updateTable('devices').set({ status, status_reason: reason, updated_at: now }).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
        if (status === 'revoked') {
          await db.updateTable('certificates').set({ status: 'revoked', revoked_at: now, revocation_reason: reason ?? 'unspecified' }).where('device_id', '=', id).where('status', '<>', 'revoked').execute();
        }
      }
      await record({ ...audit, deviceId: audit.deviceId ?? id });
      return toDevice(row);
    });
  }

  #certificates(db: Db = this.#db) {
    return db.selectFrom('certificates').selectAll();
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    return mapped(await certificateRow(this.#db, serial), toCertificate);
  }

  async listCertificates(deviceId: string): Promise<CertificateRecord[]> {
    return this.#certificatesBy('device_id', deviceId);
  }

  async findCertificatesByPublicKey(publicKeyHash: string): Promise<CertificateRecord[]> {
    return this.#certificatesBy('public_key_hash', publicKeyHash);
  }

  /** Oldest first; certificates issued in the same millisecond in the order they were written. */
  async #certificatesBy(column: 'device_id' | 'public_key_hash', value: string): Promise<CertificateRecord[]> {
    return (await this.#certificates().where(column, '=', value).orderBy('issued_at').orderBy(sql.ref(this.#dialect.insertionOrder)).execute()).map(toCertificate);
  }

  async listRevokedCertificates(now: Date): Promise<{ serial: string; revokedAt: Date; reason: string; issuerCa: string | null }[]> {
    const at = now.toISOString();
    // A suspended device's certificates are on hold (RFC 5280 §5.3.1 certificateHold) since its last status change.
    const { rows } = await sql<{ serial: string; revoked_at: string | Date; revocation_reason: string | null; issuer_ca: string | null }>`
      SELECT serial, revoked_at, revocation_reason, issuer_ca FROM certificates
      WHERE status IN ('revoked', 'superseded') AND not_after > ${at}
      UNION ALL
      SELECT c.serial, d.updated_at AS revoked_at, 'certificateHold' AS revocation_reason, c.issuer_ca
      FROM certificates c JOIN devices d ON d.id = c.device_id
      WHERE c.status = 'active' AND d.status = 'suspended' AND c.not_after > ${at}
      ORDER BY revoked_at, serial`.execute(this.#db);
    return rows.map((row) => ({ serial: row.serial, revokedAt: toDate(row.revoked_at), reason: row.revocation_reason ?? 'unspecified', issuerCa: row.issuer_ca }));
  }

  /**
   * The broker's hot path, in one statement: the certificate, its device (columns as `d_…`), the device's
   * template, and both policies an identity can get, its own (`dp_…`) and its template's (`tp_…`). Which of
   * them applies is core's rule (effectivePolicyName), decided here on the columns read, not in SQL. A
   * missing policy shows up as "no policy" (refused by the caller), not as an unknown certificate.
   */
  async getAdmission(certificateSerial: string): Promise<Admission | undefined> {
    // Built and compiled once: building the query cost more than running it (half of a lookup's CPU).
    this.#admission ??= admissionStatement(this.#db, '').compile();
    const row = (await this.#db.executeQuery({ ...this.#admission, parameters: [certificateSerial] })).rows[0];
    if (row === undefined) return undefined;
    const { template_policy: templatePolicy, template_limits: limits, issuer_state: issuerState, ...columns } = row as Record<string, unknown>;
    const parts = splitPrefixed(columns, ['d_', 'dp_', 'tp_']);
    const device = toRecord<DeviceRecord>(parts.d_ as object);
    const policyName = effectivePolicyName(device, templatePolicy == null ? undefined : { policy: templatePolicy as string });
    // The candidate named by the rule; its row is absent (name null) when that policy does not exist.
    const chosen = policyName === null ? undefined : policyName === device.policy ? parts.dp_ : parts.tp_;
    const policy = chosen?.name == null ? undefined : toRecord<PolicyRecord>(chosen);
    return { certificate: toRecord<CertificateRecord>(parts.rest as object), device, policy, limits: limits == null ? {} : fromJson(limits), issuerRetired: issuerState === 'retired' };
  }

  // templates and policies

  async getTemplate(name: string): Promise<TemplateRecord | undefined> {
    return mapped(await this.#db.selectFrom('templates').selectAll().where('name', '=', name).executeTakeFirst(), toTemplate);
  }

  async listTemplates(): Promise<TemplateRecord[]> {
    return (await this.#db.selectFrom('templates').selectAll().orderBy('name').execute()).map(toTemplate);
  }

  async putTemplate(template: NewTemplate, audit: AuditInput): Promise<TemplateRecord> {
    assertTemplate(template);
    return this.#write(async (db, record) => {
      if (!(await named(db, 'policies', template.policy))) throw new FleetgateError('POLICY_NOT_FOUND', { detail: { policy: template.policy, template: template.name } });
      const now = this.#now();
      const written = db
        .insertInto('templates')
        .values({
          name: template.name,
          policy: template.policy,
          validity_days: template.validityDays,
          key_types: JSON.stringify(template.keyTypes),
          require_allowlist: template.requireAllowlist ? 1 : 0,
          allow_reenroll: template.allowReenroll ? 1 : 0,
          limits: JSON.stringify(template.limits ?? {}),
          renew_after_expiry_days: template.renewAfterExpiryDays ?? 0,
          created_at: now,
          updated_at: now,
        })
        .onConflict((conflict) => conflict.column('name').doUpdateSet(excluded('templates', ['policy', 'validity_days', 'key_types', 'require_allowlist', 'allow_reenroll', 'limits', 'renew_after_expiry_days', 'updated_at'])))
        .returningAll()
        .executeTakeFirstOrThrow();
      return toTemplate(await audited(written, record, audit));
    });
  }

  async getPolicy(name: string): Promise<PolicyRecord | undefined> {
    return mapped(await this.#db.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirst(), toPolicy);
  }

  async listPolicies(): Promise<PolicyRecord[]> {
    return (await this.#db.selectFrom('policies').selectAll().orderBy('name').execute()).map(toPolicy);
  }

  async putPolicy(name: string, document: PolicyDocument, audit: AuditInput): Promise<PolicyRecord> {
    // Re-validated here because a stored policy that does not parse would lock every device using it out.
    const parsed = parsePolicyDocument(document);
    return this.#write(async (db, record) => {
      const written = db
        .insertInto('policies')
        .values({ name, document: JSON.stringify(parsed), version: 1, updated_at: this.#now() })
        .onConflict((conflict) => conflict.column('name').doUpdateSet({ ...excluded('policies', ['document', 'updated_at']), version: sql`policies.version + 1` }))
        .returningAll()
        .executeTakeFirstOrThrow();
      return toPolicy(await audited(written, record, audit));
    });
  }

  // claims

  async createClaim(claim: NewClaim, audit: AuditInput): Promise<ClaimRecord> {
    return this.#write(async (db, record) => {
      if (!(await named(db, 'templates', claim.template))) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: claim.template } });
      await assertIssuerActive(db, claim.issuerCa);
      const written = db
        .insertInto('claims')
        .values({
          id: claim.id,
          template: claim.template,
          certificate_serial: claim.certificateSerial,
          issuer_pem: claim.issuerPem ?? null,
          issuer_ca: claim.issuerCa ?? null,
          max_uses: claim.maxUses,
          uses: 0,
          expires_at: claim.expiresAt.toISOString(),
          status: 'active',
          created_at: this.#now(),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      return toClaim(await audited(written, record, audit));
    });
  }

  async getClaim(id: string): Promise<ClaimRecord | undefined> {
    return mapped(await this.#db.selectFrom('claims').selectAll().where('id', '=', id).executeTakeFirst(), toClaim);
  }

  async getClaimByCertificateSerial(serial: string): Promise<ClaimRecord | undefined> {
    return mapped(await this.#db.selectFrom('claims').selectAll().where('certificate_serial', '=', serial).executeTakeFirst(), toClaim);
  }

  async listClaimIssuers(): Promise<ClaimRecord[]> {
    return (await this.#db.selectFrom('claims').selectAll().where('issuer_pem', 'is not', null).where('status', '=', 'active').orderBy('id').execute()).map(toClaim);
  }

  async listClaims(): Promise<ClaimRecord[]> {
    return (await this.#db.selectFrom('claims').selectAll().orderBy('created_at').orderBy('id').execute()).map(toClaim);
  }

  async revokeClaim(id: string, audit: AuditInput): Promise<ClaimRecord> {
    return this.#write(async (db, record) => {
      const row = await db.updateTable('claims').set({ status: 'revoked' }).where('id', '=', id).returningAll().executeTakeFirst();
      if (row === undefined) throw new FleetgateError('CLAIM_NOT_FOUND', { detail: { claimId: id } });
      await record({ ...audit, detail: { ...audit.detail, claimId: id } });
      return toClaim(row);
    });
  }

  // certificate authorities

  async listCertificateAuthorities(): Promise<CertificateAuthorityRecord[]> {
    return (await this.#db.selectFrom('certificate_authorities').selectAll().orderBy('created_at').orderBy('id').execute()).map(toCertificateAuthority);
  }

  async importCertificateAuthorities(input: { cas: readonly NewCertificateAuthority[]; firstIssuers: { device: string; claim: string }; audit: AuditInput }): Promise<boolean> {
    return this.#write(async (db, record) => {
      if ((await db.selectFrom('certificate_authorities').select('id').limit(1).executeTakeFirst()) !== undefined) return false;
      const now = this.#now();
      await db.insertInto('certificate_authorities').values(input.cas.map((ca) => caRow(ca, now))).execute();
      await db.updateTable('certificates').set({ issuer_ca: input.firstIssuers.device }).where('issuer_ca', 'is', null).execute();
      await db.updateTable('claims').set({ issuer_ca: input.firstIssuers.claim }).where('issuer_ca', 'is', null).where('issuer_pem', 'is', null).execute();
      await record({ ...input.audit, detail: { ...input.audit.detail, cas: input.cas.map((ca) => ({ id: ca.id, role: ca.role })) } });
      return true;
    });
  }

  async changeCertificateAuthorities(change: CaChange): Promise<CertificateAuthorityRecord[]> {
    return this.#write(async (db, record) => {
      const now = this.#now();
      if (change.preparedFrom !== undefined) {
        // The stage decided again on the rows as they are under the lock (core planRotation): a prepare that
        // raced another one, or a root rotation that moved on meanwhile, is refused instead of half-applied.
        const { role, parentId } = change.preparedFrom;
        const rows = (await db.selectFrom('certificate_authorities').selectAll().execute()).map(toCertificateAuthority);
        let parent: string | undefined;
        try {
          const plan = planRotation(rows, role, 'prepare');
          parent = plan.stage === 'prepare' ? plan.parent.id : undefined;
        } catch {
          parent = undefined;
        }
        if (parent !== parentId) throw new FleetgateError('PKI_CA_ROTATION_CONFLICT', { detail: { role, stage: 'prepare' } });
      }
      if (change.mustBeUnused !== undefined) {
        const refusal = caInUse(change.mustBeUnused.id, await caUsage(db, change.mustBeUnused.id, change.mustBeUnused.now.toISOString()));
        if (refusal !== undefined) throw refusal;
      }
      for (const transition of change.transitions ?? []) {
        const moved = await db
          .updateTable('certificate_authorities')
          .set({ state: transition.to, updated_at: now })
          .where('id', '=', transition.id)
          .where('state', '=', transition.from)
          .executeTakeFirst();
        if (Number(moved.numUpdatedRows) !== 1) throw new FleetgateError('PKI_CA_ROTATION_CONFLICT', { detail: { caId: transition.id, expected: transition.from } });
      }
      for (const moved of change.keyRefs ?? []) {
        const updated = await db.updateTable('certificate_authorities').set({ key_ref: moved.to, updated_at: now }).where('id', '=', moved.id).where('key_ref', '=', moved.from).executeTakeFirst();
        if (Number(updated.numUpdatedRows) !== 1) throw new FleetgateError('PKI_CA_ROTATION_CONFLICT', { detail: { caId: moved.id, expected: moved.from } });
      }
      if (change.add !== undefined && change.add.length > 0) await db.insertInto('certificate_authorities').values(change.add.map((ca) => caRow(ca, now))).execute();
      await record(change.audit);
      return (await db.selectFrom('certificate_authorities').selectAll().orderBy('created_at').orderBy('id').execute()).map(toCertificateAuthority);
    });
  }

  async certificateAuthorityUsage(caId: string, now: Date): Promise<CaUsage> {
    return caUsage(this.#db, caId, now.toISOString());
  }

  // allow-lists

  async importAllowlist(template: string, entries: readonly AllowlistEntry[], audit: AuditInput): Promise<{ added: number; total: number }> {
    const rows = allowlistRows(entries);
    return this.#write(async (db, record) => {
      if (!(await named(db, 'templates', template))) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template } });
      const before = await countAllowlist(db, template);
      const now = this.#now();
      for (let start = 0; start < rows.length; start += insertBatchSize) {
        const batch = rows.slice(start, start + insertBatchSize);
        // An entry without attributes leaves a listed serial's as they are; one with attributes replaces them.
        for (const withAttributes of [false, true]) {
          const values = batch
            .filter((row) => (row.attributes !== undefined) === withAttributes)
            .map((row) => ({ template, serial: row.serial, added_at: now, attributes: JSON.stringify(row.attributes ?? {}) }));
          if (values.length === 0) continue;
          await db
            .insertInto('allowlist')
            .values(values)
            .onConflict((conflict) => (withAttributes ? conflict.columns(['template', 'serial']).doUpdateSet(excluded('allowlist', ['attributes'])) : conflict.doNothing()))
            .execute();
        }
      }
      const total = await countAllowlist(db, template);
      const added = total - before;
      await record({ ...audit, detail: { ...audit.detail, template, added, total, withAttributes: rows.filter((row) => row.attributes !== undefined).length } });
      return { added, total };
    });
  }

  async isSerialAllowed(template: string, serial: string): Promise<boolean> {
    return (await this.#db.selectFrom('allowlist').select('serial').where('template', '=', template).where('serial', '=', serial).executeTakeFirst()) !== undefined;
  }

  // operator tokens

  async createOperatorToken(input: { name: string; role: OperatorRole; tokenHash: string; audit: AuditInput }): Promise<OperatorTokenRecord> {
    const { name, role, tokenHash, audit } = input;
    assertOperatorToken(name, role, tokenHash, operatorRoles);
    return this.#write(async (db, record) => {
      if ((await tokenRow(db, name)) !== undefined) throw new FleetgateError('OPERATOR_TOKEN_EXISTS', { detail: { name } });
      const row = await db.insertInto('operator_tokens').values({ name, role, token_hash: tokenHash, created_at: this.#now(), revoked_at: null }).returning(operatorTokenColumns).executeTakeFirstOrThrow();
      await record({ ...audit, detail: { ...audit.detail, name, role } });
      return toOperatorToken(row);
    });
  }

  async findOperatorToken(tokenHash: string): Promise<OperatorTokenRecord | undefined> {
    return mapped(await this.#db.selectFrom('operator_tokens').select(operatorTokenColumns).where('token_hash', '=', tokenHash).executeTakeFirst(), toOperatorToken);
  }

  async listOperatorTokens(): Promise<OperatorTokenRecord[]> {
    return (await this.#db.selectFrom('operator_tokens').select(operatorTokenColumns).orderBy('name').execute()).map(toOperatorToken);
  }

  async revokeOperatorToken(name: string, audit: AuditInput): Promise<OperatorTokenRecord> {
    return this.#write(async (db, record) => {
      const before = await tokenRow(db, name);
      if (before === undefined) throw new FleetgateError('OPERATOR_TOKEN_NOT_FOUND', { detail: { name } });
      // The first revocation date stands.
      const row = await db.updateTable('operator_tokens').set({ revoked_at: sql`COALESCE(revoked_at, ${this.#now()})` }).where('name', '=', name).returning(operatorTokenColumns).executeTakeFirstOrThrow();
      await record({ ...audit, detail: { ...audit.detail, name, role: row.role, alreadyRevoked: before.revoked_at !== null } });
      return toOperatorToken(row);
    });
  }

  // audit log

  async appendAudit(entry: AuditInput): Promise<AuditEntry> {
    return this.#write((_db, record) => record(entry));
  }

  queueAudit(entry: AuditInput, onError: (error: unknown) => void): void {
    let fields: Omit<StoredAuditFields, 'id'>;
    try {
      if (this.#closed) throw new Error('The registry is closed: the audit entry was not written.');
      // Checked now, not in the batch: one bad entry must not fail the others written with it.
      if (entry.result !== 'ok' && entry.result !== 'refused') throw new TypeError(`Audit result must be ok or refused, not ${String(entry.result)}.`);
      fields = this.#auditFields(entry);
    } catch (error) {
      onError(error);
      return;
    }
    this.#queue.push({ fields, onError });
  }

  async flushAudit(): Promise<void> {
    await this.#queue.settle();
  }

  async queryAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    await this.#queue.settle(); // this process reads what it queued
    const { deviceId, actor, action, result, since, until, afterId } = query;
    const rows = await this.#db
      .selectFrom('audit_log')
      .select(auditColumns)
      .$if(deviceId !== undefined, (q) => q.where('device_id', '=', deviceId!))
      .$if(actor !== undefined, (q) => q.where('actor', '=', actor!))
      .$if(action !== undefined, (q) => q.where('action', '=', action!))
      .$if(result !== undefined, (q) => q.where('result', '=', result!))
      // Half-open [since, until): consecutive windows neither overlap nor leave gaps.
      .$if(since !== undefined, (q) => q.where('at', '>=', since!.toISOString()))
      .$if(until !== undefined, (q) => q.where('at', '<', until!.toISOString()))
      .$if(afterId !== undefined, (q) => q.where('id', '>', afterId!))
      // Ordered by id, not by `at`: callers may supply `at`, but ids are the order entries were written in.
      .orderBy('id', afterId === undefined ? 'desc' : 'asc')
      .limit(clampLimit(query.limit))
      .execute();
    return rows.map((row) => storedAuditEntry(storedFields(row)));
  }

  async verifyAudit(options: { anchor?: AuditAnchor } = {}): Promise<AuditVerification> {
    await this.#queue.settle();
    const walker = new AuditChainWalker(options.anchor);
    for (;;) {
      const rows = await this.#db.selectFrom('audit_log').select([...auditColumns, 'prev_hash', 'hash']).where('id', '>', walker.lastId).orderBy('id').limit(verifyBatchSize).execute();
      for (const row of rows) {
        const broken = walker.check({ ...storedFields(row), prevHash: row.prev_hash, hash: row.hash });
        if (broken !== undefined) return broken;
      }
      if (rows.length < verifyBatchSize) {
        // One statement, so both numbers come from the same snapshot.
        const { rows: ids } = await sql<{ counter: number | string; max_id: number | string }>`SELECT ${sql.raw(this.#dialect.auditCounter)} AS counter,
          COALESCE((SELECT max(id) FROM audit_log), 0) AS max_id`.execute(this.#db);
        // Entries appended while we walked are checked too; otherwise this was the end of the log.
        if (Number(ids[0]?.max_id ?? 0) <= walker.lastId) return walker.finish(Number(ids[0]?.counter ?? 0));
      }
      await nextTurn();
    }
  }

  // rotation campaigns (statements in rotation-queries.ts)

  async createRotationCampaign(input: { id: string; selector: RotationSelector; ratePerSecond: number; audit: AuditInput }): Promise<RotationCampaignRecord> {
    const { id, selector, ratePerSecond, audit } = input;
    return this.#write(async (db, record) => {
      const now = this.#clock.now();
      const stamp = now.toISOString();
      const text = formatRotationSelector(selector);
      await db.insertInto('rotation_campaigns').values({ id, selector: text, rate_per_second: ratePerSecond, state: 'running', created_by: audit.actor, created_at: stamp, updated_at: stamp, ended_at: null }).execute();
      const selected = await insertSelection(db, id, selector, now);
      if (selected === 0) throw new FleetgateError('ROTATION_SELECTION_EMPTY', { detail: { selector: text } });
      await record({ ...audit, detail: { ...audit.detail, campaignId: id, selector: text, ratePerSecond, selected } });
      return (await campaignRecords(db, { id }))[0] as RotationCampaignRecord;
    });
  }

  async getRotationCampaign(id: string): Promise<RotationCampaignRecord | undefined> {
    return (await campaignRecords(this.#db, { id }))[0];
  }

  async listRotationCampaigns(query: { states?: readonly RotationCampaignState[] } = {}): Promise<RotationCampaignRecord[]> {
    return campaignRecords(this.#db, query.states === undefined ? {} : { states: query.states });
  }

  async changeRotationCampaign(id: string, action: RotationCampaignAction, audit: AuditInput): Promise<RotationCampaignRecord> {
    return this.#write(async (db, record) => {
      const row = await db.selectFrom('rotation_campaigns').select('state').where('id', '=', id).executeTakeFirst();
      if (row === undefined) throw new FleetgateError('ROTATION_CAMPAIGN_NOT_FOUND', { detail: { campaignId: id } });
      const next = rotationCampaignTransition(row.state, action);
      if ('code' in next) throw new FleetgateError(next.code, { detail: { campaignId: id, ...next.detail } });
      const stamp = this.#now();
      await db.updateTable('rotation_campaigns').set({ state: next.to, updated_at: stamp, ...(next.to === 'closed' ? { ended_at: stamp } : {}) }).where('id', '=', id).execute();
      await record({ ...audit, detail: { ...audit.detail, campaignId: id, from: row.state, to: next.to } });
      return (await campaignRecords(db, { id }))[0] as RotationCampaignRecord;
    });
  }

  async completeRotationCampaign(id: string, audit: AuditInput): Promise<RotationCampaignRecord | undefined> {
    return this.#write(async (db, record) => {
      const [campaign] = await campaignRecords(db, { id });
      if (campaign === undefined || (campaign.state !== 'running' && campaign.state !== 'paused')) return undefined;
      if (campaign.progress.renewed < campaign.progress.selected) return undefined;
      const stamp = this.#now();
      await db.updateTable('rotation_campaigns').set({ state: 'completed', updated_at: stamp, ended_at: stamp }).where('id', '=', id).execute();
      await record({ ...audit, detail: { ...audit.detail, campaignId: id, from: campaign.state, to: 'completed', renewed: campaign.progress.renewed } });
      return (await campaignRecords(db, { id }))[0];
    });
  }

  async dispatchRotation(campaignId: string, limit: number): Promise<RotationDispatch[]> {
    return this.#write(async (db) => {
      const now = this.#clock.now();
      return (await dispatchPending(db, campaignId, limit, now)).map((row) => ({ ...row, at: now }));
    });
  }

  async pendingRotations(deviceId: string): Promise<{ campaignId: string; state: 'offline' | 'notified' }[]> {
    return pendingForDevice(this.#db, deviceId);
  }

  async markRotationNotified(campaignId: string, deviceId: string, audit: AuditInput): Promise<boolean> {
    return this.#write(async (db, record) => {
      const stamp = this.#now();
      const first = await db
        .updateTable('rotation_devices')
        .set({ state: 'notified', notified_at: stamp })
        .where('campaign_id', '=', campaignId)
        .where('device_id', '=', deviceId)
        .where('state', '=', 'offline')
        .executeTakeFirst();
      if (Number(first.numUpdatedRows) === 0) return false;
      await record({ ...audit, deviceId, detail: { ...audit.detail, campaignId } });
      return true;
    });
  }

  async listRotationDevices(campaignId: string, query: RotationDeviceQuery = {}): Promise<RotationDeviceRow[]> {
    return deviceRows(this.#db, campaignId, { ...query, ...(query.limit === undefined ? {} : { limit: clampLimit(query.limit) }) });
  }

  async fleetCheckFacts(query: FleetCheckFactsQuery): Promise<FleetCheckFacts> {
    const now = query.now.toISOString();
    const epoch = (column: string) => sql.raw(this.#dialect.epochSeconds(column));
    // The device's current certificate: active, on an active device, with no active one that outlives it
    // (a renewal issued but not used yet counts as renewed). Uses the certificates_device_id index.
    const current = sql`d.kind = 'device' AND d.status = 'active' AND c.status = 'active' AND c.not_after > ${now}
      AND NOT EXISTS (SELECT 1 FROM certificates r WHERE r.device_id = c.device_id AND r.status = 'active' AND r.not_after > c.not_after)`;
    const groups = async (condition: RawBuilder<unknown>): Promise<CertificateGroup[]> => {
      const { rows } = await sql<{ template: string; n: number | string }>`SELECT d.template AS template, count(*) AS n
        FROM certificates c JOIN devices d ON d.id = c.device_id WHERE ${current} AND ${condition} GROUP BY d.template ORDER BY d.template`.execute(this.#db);
      return Promise.all(
        rows.map(async (row) => {
          const sample = query.sample <= 0 ? [] : (await sql<{ id: string }>`SELECT c.device_id AS id FROM certificates c JOIN devices d ON d.id = c.device_id
            WHERE ${current} AND ${condition} AND d.template = ${row.template} ORDER BY c.not_after, c.device_id LIMIT ${query.sample}`.execute(this.#db)).rows.map((r) => r.id);
          return { template: row.template, count: Number(row.n), sample };
        }),
      );
    };
    // Past two thirds of [not_before, not_after]: now >= nb + 2/3 (na - nb), i.e. nb + 2 na <= 3 now.
    const nowSeconds = query.now.getTime() / 1000;
    const [expiring, renewalOverdue] = await Promise.all([
      groups(sql`c.not_after <= ${query.expiringBefore.toISOString()}`),
      groups(sql`${epoch('c.not_before')} + 2 * ${epoch('c.not_after')} <= ${3 * nowSeconds}`),
    ]);
    const inactive: { id: string; status: DeviceStatus }[] = [];
    const ids = [...new Set(query.liveDeviceIds)];
    for (let i = 0; i < ids.length; i += insertBatchSize) {
      const batch = ids.slice(i, i + insertBatchSize);
      inactive.push(...(await this.#db.selectFrom('devices').select(['id', 'status']).where('status', '<>', 'active').where('id', 'in', batch).orderBy('id').execute()));
    }
    const overrides = await this.#db
      .selectFrom('devices')
      .select(['policy', (eb) => eb.fn.countAll().as('n')])
      .where('kind', '=', 'device')
      .where('status', '<>', 'revoked')
      .where('policy', 'is not', null)
      .groupBy('policy')
      .orderBy('policy')
      .execute();
    return { expiring, renewalOverdue, inactive, policyOverrides: overrides.map((row) => ({ policy: row.policy as string, devices: Number(row.n) })) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Nothing queued is lost on a clean shutdown.
    await this.#queue.settle();
    await this.#dialect.close();
  }
}

/** An upsert's replacement: these columns take the values of the row that conflicted (`excluded`). */
function excluded<T extends keyof Tables>(_table: T, columns: readonly (keyof Tables[T] & string)[]) {
  return Object.fromEntries(columns.map((column) => [column, sql.ref<never>(`excluded.${column}`)])) as { [C in keyof Tables[T]]?: RawBuilder<never> };
}

/** The row a write returned, once its audit entry is recorded in the same transaction. */
async function audited<R>(written: Promise<R>, record: AuditWriter, entry: AuditInput): Promise<R> {
  const row = await written;
  await record(entry);
  return row;
}

/** A joined row's columns by prefix (the prefix removed); columns with none of them under `rest`. */
function splitPrefixed(row: Record<string, unknown>, prefixes: readonly string[]): Record<string, Record<string, unknown>> {
  const parts: Record<string, Record<string, unknown>> = { rest: {} };
  for (const prefix of prefixes) parts[prefix] = {};
  for (const column in row) {
    const prefix = prefixes.find((candidate) => column.startsWith(candidate));
    (parts[prefix ?? 'rest'] as Record<string, unknown>)[prefix === undefined ? column : column.slice(prefix.length)] = row[column];
  }
  return parts;
}

const mapped = <R, T>(row: R | undefined, map: (row: R) => T): T | undefined => (row === undefined ? undefined : map(row));

const deviceRow = (db: Db, id: string) => db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
const certificateRow = (db: Db, serial: string) => db.selectFrom('certificates').selectAll().where('serial', '=', serial).executeTakeFirst();
const tokenRow = (db: Db, name: string) => db.selectFrom('operator_tokens').select(operatorTokenColumns).where('name', '=', name).executeTakeFirst();

async function named(db: Db, table: 'templates' | 'policies', name: string): Promise<boolean> {
  return (await db.selectFrom(table).select('name').where('name', '=', name).executeTakeFirst()) !== undefined;
}

async function countAllowlist(db: Db, template: string): Promise<number> {
  const row = await db.selectFrom('allowlist').select((eb) => eb.fn.countAll().as('total')).where('template', '=', template).executeTakeFirst();
  return Number(row?.total ?? 0);
}

function insertDevice(
  db: Db,
  device: { id: string; kind: DeviceRecord['kind']; template: string; policy: string | null; attributes: object; reported: object; enrolledBy: string | null; now: string },
) {
  const { id, kind, template, policy, now } = device;
  return db
    .insertInto('devices')
    .values({ id, kind, status: 'active', template, policy, attributes: JSON.stringify(device.attributes), reported_attributes: JSON.stringify(device.reported), status_reason: null, enrolled_by: device.enrolledBy, created_at: now, updated_at: now })
    .execute();
}

/**
 * What a CA signed is recorded only while that CA is the active one, decided under the write lock: a
 * certificate signed just before a rotation stage moved its CA on is refused (the caller asks again and
 * the CA now active signs), so nothing is ever recorded against a retiring or retired CA.
 */
async function assertIssuerActive(db: Db, issuerCa: string | null | undefined): Promise<void> {
  if (issuerCa == null) return;
  const row = await db.selectFrom('certificate_authorities').select('state').where('id', '=', issuerCa).executeTakeFirst();
  if (row !== undefined && row.state !== 'active') throw new FleetgateError('PKI_CA_ROTATION_CONFLICT', { detail: { caId: issuerCa, state: row.state } });
}

async function insertCertificate(db: Db, deviceId: string, certificate: NewCertificate, replaces: string | null, now: string) {
  await assertIssuerActive(db, certificate.issuerCa);
  return db
    .insertInto('certificates')
    .values({
      serial: certificate.serial,
      device_id: deviceId,
      fingerprint: certificate.fingerprint,
      public_key_hash: certificate.publicKeyHash,
      not_before: certificate.notBefore.toISOString(),
      not_after: certificate.notAfter.toISOString(),
      status: 'active',
      pem: certificate.pem,
      issued_at: now,
      revoked_at: null,
      revocation_reason: null,
      replaces,
      issuer_ca: certificate.issuerCa ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

function caRow(ca: NewCertificateAuthority, now: string) {
  return {
    id: ca.id, role: ca.role, state: ca.state, fingerprint: ca.fingerprint, subject: ca.subject, issuer_id: ca.issuerId, cross_of: ca.crossOf, pem: ca.pem,
    key_ref: ca.keyRef, not_before: ca.notBefore.toISOString(), not_after: ca.notAfter.toISOString(), created_at: now, updated_at: now,
  };
}

/** Unexpired active certificates of identities not revoked, usable claims, and CAs not retired, signed by `caId`. */
async function caUsage(db: Db, caId: string, now: string): Promise<CaUsage> {
  const certificates = await db
    .selectFrom('certificates')
    .innerJoin('devices', 'devices.id', 'certificates.device_id')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('certificates.issuer_ca', '=', caId)
    .where('certificates.status', '=', 'active')
    .where('certificates.not_after', '>', now)
    .where('devices.status', '<>', 'revoked')
    .executeTakeFirstOrThrow();
  const claims = await db
    .selectFrom('claims')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('issuer_ca', '=', caId)
    .where('status', '=', 'active')
    .where('expires_at', '>', now)
    .where((eb) => eb.or([eb('max_uses', 'is', null), eb('uses', '<', eb.ref('max_uses'))]))
    .executeTakeFirstOrThrow();
  const authorities = await db
    .selectFrom('certificate_authorities')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('issuer_id', '=', caId)
    .where('role', '<>', 'cross')
    .where('state', '<>', 'retired')
    .where('id', '<>', caId)
    .executeTakeFirstOrThrow();
  return { certificates: Number(certificates.n), claims: Number(claims.n), authorities: Number(authorities.n) };
}

/**
 * Certificates of `deviceId` naming `serial` in `replaces`, whatever their status (a renewal after expiry
 * happens once). A renewal is always recorded for the holder of the certificate it replaces, so the
 * device_id index finds them all.
 */
async function successorCount(db: Db, deviceId: string, serial: string): Promise<number> {
  const row = await db.selectFrom('certificates').select((eb) => eb.fn.countAll<number | string>().as('n')).where('device_id', '=', deviceId).where('replaces', '=', serial).executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Marks certificates superseded (the caller narrows which). */
const supersede = (db: Db, now: string) => db.updateTable('certificates').set({ status: 'superseded', revoked_at: now, revocation_reason: 'superseded' });

function storedFields(row: { id: number | string; at: string | Date; actor: string; action: string; result: string; code: string | null; device_id: string | null; detail: string | null }): StoredAuditFields {
  return { id: Number(row.id), at: toIsoText(row.at), actor: row.actor, action: row.action, result: row.result, code: row.code, deviceId: row.device_id, detail: row.detail };
}

/** Columns stored as time, JSON or a flag: read back as the port's Date, parsed value or boolean. */
const times = new Set(['created_at', 'updated_at', 'not_before', 'not_after', 'issued_at', 'revoked_at', 'expires_at']);
const documents = new Set(['attributes', 'reported_attributes', 'key_types', 'limits', 'document']);
const flags = new Set(['require_allowlist', 'allow_reenroll']);
/** Kept out of records: insertion order (PostgreSQL's seq), and what only admission asks for. */
const internal = new Set(['seq', 'enrolled_by']);

/** snake_case column → camelCase field, computed once per column name (the set of columns is fixed). */
const fieldNames = new Map<string, string>();

/**
 * A row as the port's record: each snake_case column becomes the camelCase field of the same name. Policy
 * documents were validated by parsePolicyDocument before they were written.
 */
function toRecord<T>(row: object): T {
  const record: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) {
    if (internal.has(column)) continue;
    let field = fieldNames.get(column);
    if (field === undefined) fieldNames.set(column, (field = column.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase())));
    record[field] = value === null ? null : times.has(column) ? toDate(value as string | Date) : documents.has(column) ? fromJson(value) : flags.has(column) ? Boolean(value) : value;
  }
  return record as T;
}

const toDevice = (row: Row<'devices'>) => toRecord<DeviceRecord>(row);
const toCertificate = (row: Row<'certificates'>) => toRecord<CertificateRecord>(row);
const toTemplate = (row: Row<'templates'>) => toRecord<TemplateRecord>(row);
const toPolicy = (row: Row<'policies'>) => toRecord<PolicyRecord>(row);
const toClaim = (row: Row<'claims'>) => toRecord<ClaimRecord>(row);
const toCertificateAuthority = (row: Row<'certificate_authorities'>) => toRecord<CertificateAuthorityRecord>(row);
const toOperatorToken = (row: Pick<Row<'operator_tokens'>, (typeof operatorTokenColumns)[number]>) => toRecord<OperatorTokenRecord>(row);
