/**
 * Group commit for audit entries nobody waits for (a CONNECT, a sampled refusal: README "Audit
 * durability"): each used to be a write transaction of its own, on SQLite a synchronous fsync on the main
 * thread per CONNECT. Queued here instead, they are written by the registry's next write, many to one
 * transaction: the one `flush` starts on the next turn of the event loop, or any write that takes the
 * write lock first (registry/sql-registry.ts `#write` drains, under the lock and before its own rows, what
 * was queued before it was called: an entry queued before a write is in the hash chain before that write's
 * rows). One flush is in flight at a time; what is queued meanwhile goes into the next one, so the busier
 * the gateway, the more rows per commit.
 */
export class AuditQueue {
    #flush;
    #entries = [];
    /** Entries ever queued, and those of them written or reported failed; both only grow, in queue order. */
    #queued = 0;
    #settled = 0;
    #flushing;
    /** `flush` runs one registry write that drains the queue; it must not reject. */
    constructor(flush) {
        this.#flush = flush;
    }
    /** How many entries were ever queued: a write remembers it when called, and drains up to it. */
    get queued() {
        return this.#queued;
    }
    push(entry) {
        this.#queued += 1;
        this.#entries.push({ ...entry, seq: this.#queued });
        if (this.#flushing === undefined)
            this.#start();
    }
    /**
     * The entries queued up to the `upTo`th (all by default), oldest first, for a write that holds the write
     * lock; it then calls written, putBack or failed with them.
     */
    drain(upTo = Number.POSITIVE_INFINITY) {
        let count = 0;
        // Oldest first, always: putBack returns entries to the front.
        while (count < this.#entries.length && this.#entries[count].seq <= upTo)
            count += 1;
        return count === 0 ? noEntries : this.#entries.splice(0, count);
    }
    /** Committed. */
    written(batch) {
        this.#settled += batch.length;
    }
    /** The write that drained them failed for a reason of its own (a refusal): they go first into the next batch. */
    putBack(batch) {
        if (batch.length === 0)
            return;
        this.#entries.unshift(...batch);
        if (this.#flushing === undefined)
            this.#start();
    }
    /** Their own batch failed (database gone, disk full): dropped, and each caller hears why. */
    failed(batch, error) {
        this.#settled += batch.length;
        for (const entry of batch) {
            try {
                entry.onError(error);
            }
            catch {
                // A reporting callback that throws must not take the other entries' reports, or the process, with it.
            }
        }
    }
    /** Resolves once every entry queued before the call is written or reported failed. */
    async settle() {
        const target = this.#queued;
        // A flush even when the queue looks empty: a write in flight may hold drained entries, and the flush
        // waits for that write's lock, so it ends after them.
        while (this.#settled < target)
            await (this.#flushing ?? this.#start());
    }
    #start() {
        const flushing = new Promise((resolve) => setImmediate(resolve))
            .then(() => this.#flush())
            .finally(() => {
            this.#flushing = undefined;
            if (this.#entries.length > 0)
                this.#start();
        });
        this.#flushing = flushing;
        return flushing;
    }
}
const noEntries = [];
