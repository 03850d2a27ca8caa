/** Reads the tip; `counter` is the dialect's auditCounter. */
export const auditTipQuery = (counter) => `SELECT ${counter} AS last_id, (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) AS last_hash`;
/** A time as stored, as a Date. */
export const toDate = (value) => new Date(value);
/** A time as stored, as the ISO text it was written as (SQLite keeps the text; PostgreSQL gives a Date). */
export const toIsoText = (value) => (typeof value === 'string' ? value : value.toISOString());
/** A JSON column as stored, parsed. */
export const fromJson = (value) => (typeof value === 'string' ? JSON.parse(value) : value);
