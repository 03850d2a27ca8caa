import type { ColumnType, Kysely } from 'kysely';
import type { RotationCampaignState } from '../core/index.ts';
import type { CaRole, CaState, CertificateStatus, ClaimStatus, DeviceStatus, IdentityKind, OperatorRole, RotationDeviceState } from './registry-port.ts';

/**
 * Everything that differs between SQLite and PostgreSQL, in one shape; the registry itself
 * (sql-registry.ts) is written once against it. Values cross in the forms both accept: times as ISO-8601
 * text with milliseconds (TEXT in SQLite, timestamptz(3) in PostgreSQL, which reads them back as Date),
 * JSON as text (TEXT or `json`, which PostgreSQL reads back parsed), flags as 0/1 (INTEGER or boolean).
 */
export interface StorageDialect {
  readonly db: Kysely<Tables>;
  /**
   * Opens a transaction holding the registry's one write lock, taken before anything is read, so that
   * every write sees all writes committed before it and none in between (check-then-write is safe, the
   * audit chain stays linear, claim uses exact); then reads the audit chain's tip, which nobody else can
   * move until this transaction ends.
   */
  beginWrite(connection: Kysely<Tables>): Promise<AuditTip>;
  /** Runs a write (or a migration) once no other write of this process to the same database is under way. */
  queueWrite<T>(work: () => Promise<T>): Promise<T>;
  /** The same for schema changes; PostgreSQL also creates the schema here if it is missing. */
  beginMigration(connection: Kysely<Tables>): Promise<void>;
  /** Runs one migration step's SQL (several statements). */
  runScript(connection: Kysely<Tables>, script: string): Promise<void>;
  tableExists(connection: Kysely<Tables>, name: string): Promise<boolean>;
  /** Where Kysely's migration tables live (PostgreSQL: the registry's schema); undefined: the database's own. */
  readonly migrationSchema: string | undefined;
  readonly steps: readonly SchemaStep[];
  /** How many of `steps` the registry's own runner ran before Kysely's (recorded in `schema_migrations`). */
  readonly legacySteps: number;
  /** SQL for the highest audit id ever handed out (a counter that survives removed rows). */
  readonly auditCounter: string;
  /**
   * Writes audit rows (consecutive ids, already chained) and moves the counter (PostgreSQL in the same
   * statement; SQLite's AUTOINCREMENT itself).
   */
  insertAudit(connection: Kysely<Tables>, rows: readonly AuditRow[]): Promise<void>;
  /** SQL for a time column as seconds since the epoch (for arithmetic on validity periods). */
  epochSeconds(column: string): string;
  /** The column giving certificates their insertion order (ties within a millisecond). */
  readonly insertionOrder: 'rowid' | 'seq';
  /** Text as the database will give it back, so an audit hash is computed over what is stored. */
  storableText(value: string): string;
  /** A database refusal with a catalogue code where one fits; anything else as it is. */
  mapError(error: unknown): unknown;
  close(): Promise<void>;
}

/** An audit row as written. */
export interface AuditRow {
  readonly id: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly result: 'ok' | 'refused';
  readonly code: string | null;
  readonly device_id: string | null;
  readonly detail: string | null;
  readonly prev_hash: string;
  readonly hash: string;
}

/** The highest audit id ever handed out and the newest entry's hash (null in an empty log). */
export interface AuditTip {
  readonly last_id: number | string;
  readonly last_hash: string | null;
}

/** Reads the tip; `counter` is the dialect's auditCounter. */
export const auditTipQuery = (counter: string): string => `SELECT ${counter} AS last_id, (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) AS last_hash`;

export interface SchemaStep {
  /** `NNNN-what`: Kysely runs steps in name order; NNNN is the step's number. */
  readonly name: string;
  readonly sql: string;
}

/** Written as ISO text; read as text (SQLite) or Date (PostgreSQL). */
type Stamp = ColumnType<string | Date, string, string>;
type NullableStamp = ColumnType<string | Date | null, string | null, string | null>;
/** Written as JSON text; read as text (SQLite) or parsed (PostgreSQL). */
type Json = ColumnType<unknown, string, string>;
/** Written as 0/1; read as a number (SQLite) or boolean (PostgreSQL). */
type Flag = ColumnType<number | boolean, number, number>;
/** bigint: read as a number (SQLite) or a decimal string (PostgreSQL). */
type Id = ColumnType<number | string, number, number>;

export interface Tables {
  devices: {
    id: string; kind: IdentityKind; status: DeviceStatus; template: string; policy: string | null; status_reason: string | null;
    attributes: Json; reported_attributes: Json; enrolled_by: string | null; created_at: Stamp; updated_at: Stamp;
  };
  certificates: {
    serial: string; device_id: string; fingerprint: string; public_key_hash: string; not_before: Stamp; not_after: Stamp; status: CertificateStatus;
    pem: string; issued_at: Stamp; revoked_at: NullableStamp; revocation_reason: string | null; replaces: string | null; issuer_ca: string | null;
  };
  templates: {
    name: string; policy: string; validity_days: number; key_types: Json; require_allowlist: Flag; allow_reenroll: Flag; limits: Json; renew_after_expiry_days: number;
    created_at: Stamp; updated_at: Stamp;
  };
  policies: { name: string; document: Json; version: number; updated_at: Stamp };
  claims: {
    id: string; template: string; certificate_serial: string; issuer_pem: string | null; max_uses: number | null; uses: number;
    expires_at: Stamp; status: ClaimStatus; created_at: Stamp; issuer_ca: string | null;
  };
  certificate_authorities: {
    id: string; role: CaRole; state: CaState; fingerprint: string; subject: string; issuer_id: string | null; cross_of: string | null; pem: string;
    key_ref: string | null; not_before: Stamp; not_after: Stamp; created_at: Stamp; updated_at: Stamp;
  };
  allowlist: { template: string; serial: string; added_at: Stamp; attributes: Json };
  audit_log: {
    id: Id; at: Stamp; actor: string; action: string; result: 'ok' | 'refused'; code: string | null; device_id: string | null;
    detail: ColumnType<unknown, string | null, never>; prev_hash: string; hash: string;
  };
  audit_sequence: { last_id: Id };
  operator_tokens: { name: string; role: OperatorRole; token_hash: string; created_at: Stamp; revoked_at: NullableStamp };
  rotation_campaigns: {
    id: string; selector: string; rate_per_second: number; state: RotationCampaignState; created_by: string; created_at: Stamp; updated_at: Stamp; ended_at: NullableStamp;
  };
  rotation_devices: { campaign_id: string; device_id: string; state: RotationDeviceState; dispatched_at: NullableStamp; notified_at: NullableStamp };
  schema_migrations: { version: number; name: string; applied_at: Stamp };
  kysely_migration: { name: string; timestamp: string };
}

/** A time as stored, as a Date. */
export const toDate = (value: string | Date): Date => new Date(value);
/** A time as stored, as the ISO text it was written as (SQLite keeps the text; PostgreSQL gives a Date). */
export const toIsoText = (value: string | Date): string => (typeof value === 'string' ? value : value.toISOString());
/** A JSON column as stored, parsed. */
export const fromJson = <T>(value: unknown): T => (typeof value === 'string' ? JSON.parse(value) : value) as T;
