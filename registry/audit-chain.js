import { createHash } from 'node:crypto';
/**
 * The audit log's hash chain, shared by SQLite and PostgreSQL so that a log copied from SQLite to PostgreSQL still
 * verifies: the same stored row must give the same bytes, whatever holds it.
 */
/** What the first entry links to. */
export const auditGenesisHash = '0'.repeat(64);
/**
 * SHA-256 (lower-case hex) over the previous entry's hash, a newline, and the stored fields as a JSON array
 * in a fixed order. An array, not an object: there is no key order to agree on. `detail` is hashed as the
 * text stored, never re-serialised, so the databases must keep that text (no jsonb normalisation).
 */
export function auditEntryHash(prevHash, fields) {
    const canonical = JSON.stringify([fields.id, fields.at, fields.actor, fields.action, fields.result, fields.code, fields.deviceId, fields.detail]);
    return createHash('sha256').update(prevHash).update('\n').update(canonical).digest('hex');
}
/**
 * Text as the database will give it back. A lone UTF-16 surrogate cannot be encoded as UTF-8, and
 * better-sqlite3 would store bytes that read back as different characters, so the hash computed at insert
 * would never match again: such strings are made well-formed (U+FFFD) before they are hashed and stored.
 */
export function storableText(value) {
    return Buffer.from(value, 'utf8').toString('utf8');
}
/**
 * Checks rows handed to it in id order; the registry streams its rows through one walker. Ids are gapless
 * (the registry assigns the next id itself), so a removed entry is found even when the entries after it
 * were re-hashed to hide it, and a removed tail is found by comparing with the highest id ever assigned.
 */
export class AuditChainWalker {
    #anchor;
    #lastId = 0;
    #lastHash = auditGenesisHash;
    #entries = 0;
    /** `anchor`: an entry's hash recorded earlier (a past head); the chain must still contain it. */
    constructor(anchor) {
        this.#anchor = anchor;
    }
    /** The id after which the next row is expected (for reading the next batch). */
    get lastId() {
        return this.#lastId;
    }
    /** Undefined while the chain holds; the verdict at the first break. Rows must come in ascending id order. */
    check(row) {
        if (row.id !== this.#lastId + 1) {
            return this.#broken(this.#lastId + 1, `${describeIds(this.#lastId + 1, row.id - 1)} missing`);
        }
        if (row.prevHash !== this.#lastHash) {
            return this.#broken(row.id, this.#lastId === 0 ? `entry ${row.id} does not start from the genesis hash` : `entry ${row.id} does not link to the hash of entry ${this.#lastId}`);
        }
        if (auditEntryHash(row.prevHash, row) !== row.hash) {
            return this.#broken(row.id, `entry ${row.id} does not match its hash (its content was changed)`);
        }
        if (row.id === this.#anchor?.id && row.hash !== this.#anchor.hash) {
            // Consistent in itself, yet not the chain that was recorded: rewritten somewhere up to here, so no
            // entry can be vouched for and there is no trustworthy head to report.
            return { ok: false, entries: 0, firstBrokenId: 1, reason: `entry ${row.id} no longer has the hash recorded for it (the log was rewritten)` };
        }
        this.#lastId = row.id;
        this.#lastHash = row.hash;
        this.#entries += 1;
        return undefined;
    }
    /** After the last row. `highestAssignedId` is the largest id the log ever handed out (0 if none). */
    finish(highestAssignedId) {
        if (highestAssignedId > this.#lastId) {
            return this.#broken(this.#lastId + 1, `${describeIds(this.#lastId + 1, highestAssignedId)} missing from the end of the log`);
        }
        // The tail and the id counter were both cut back: only a recorded anchor can tell.
        if (this.#anchor !== undefined && this.#anchor.id > this.#lastId) {
            return this.#broken(this.#lastId + 1, `entry ${this.#anchor.id}, recorded earlier, is no longer in the log`);
        }
        return { ok: true, entries: this.#entries, ...this.#head() };
    }
    #broken(firstBrokenId, reason) {
        return { ok: false, entries: this.#entries, firstBrokenId, reason, ...this.#head() };
    }
    #head() {
        return this.#lastId === 0 ? {} : { head: { id: this.#lastId, hash: this.#lastHash } };
    }
}
function describeIds(first, last) {
    return first === last ? `entry ${first} is` : `entries ${first} to ${last} are`;
}
