import { afterEach, describe, expect, it } from 'vitest';
import { auditEntryHash, type ChainedAuditRow } from '../../registry/audit-chain.ts';
import type { Registry } from '../../registry/index.ts';

/**
 * Tampering with the audit log the way someone with the database would (a raw connection, the append-only
 * triggers out of the way, rows changed or removed), the same on every database: each break must be
 * reported at the right entry. The database-specific cases (text encodings, several processes, triggers
 * in place, time arithmetic) stay in audit-chain.test.ts and postgres-audit-chain.test.ts.
 */
export interface AuditTamper {
  /** Runs SQL with the append-only triggers disabled. */
  exec(sql: string): Promise<void>;
  /** The rows as stored, in id order, in the form their hash covers. */
  rows(): Promise<ChainedAuditRow[]>;
  /** Sets columns of one row. */
  rewrite(id: number, values: { detail?: string; prevHash: string; hash: string }): Promise<void>;
  /** Winds the counter of the highest id ever handed out back to `to`. */
  resetCounter(to: number): Promise<void>;
  /** Inserts entry `id` by hand, with a made-up hash. */
  forge(id: number): Promise<void>;
}

export interface AuditChainBackend {
  /** A fresh registry and a way in behind its back. */
  open(): Promise<{ registry: Registry; tamper: AuditTamper }>;
  /** Changes to entry 3 only this database can make (its time arithmetic), each as [what, SQL]. */
  readonly changes?: readonly (readonly [string, string])[];
  /** SQL that makes every INSERT into audit_log fail (a database refusing writes), and SQL that undoes it. */
  readonly refuseInserts: { readonly block: string; readonly unblock: string };
}

/** What an attacker who knows the algorithm computes to make a changed row look consistent. */
export const rehash = (row: ChainedAuditRow, prevHash: string): string => auditEntryHash(prevHash, row);

export function describeAuditChainContract(name: string, backend: AuditChainBackend): void {
  describe(`audit hash chain contract: ${name}`, () => {
    const opened: Registry[] = [];
    afterEach(async () => {
      for (const registry of opened.splice(0)) await registry.close();
    });

    /** A registry whose log holds entries 1..count. */
    async function withEntries(count: number): Promise<{ registry: Registry; tamper: AuditTamper }> {
      const fresh = await backend.open();
      opened.push(fresh.registry);
      for (let n = 1; n <= count; n += 1) {
        await fresh.registry.appendAudit({ actor: 'operator:ops', action: `step.${n}`, result: n % 2 === 0 ? 'ok' : 'refused', code: 'API_FORBIDDEN', deviceId: `sensor-${n}`, detail: { n } });
      }
      return fresh;
    }

    /** Re-links every entry after `afterId` to the one before it, as a careful attacker would. */
    async function relink(tamper: AuditTamper, afterId: number): Promise<void> {
      const rows = await tamper.rows();
      let prevHash = rows.find((row) => row.id === afterId)?.hash ?? '0'.repeat(64);
      for (const row of rows.filter((candidate) => candidate.id > afterId)) {
        const hash = rehash(row, prevHash);
        await tamper.rewrite(row.id, { prevHash, hash });
        prevHash = hash;
      }
    }

    it('stores prev_hash and hash with each entry, starting from the genesis hash', async () => {
      const { tamper } = await withEntries(3);
      const rows = await tamper.rows();
      expect(rows.map((row) => row.id)).toEqual([1, 2, 3]);
      expect(rows[0]?.prevHash).toBe('0'.repeat(64));
      for (const [index, row] of rows.entries()) {
        expect(row.hash).toBe(rehash(row, row.prevHash));
        if (index > 0) expect(row.prevHash).toBe(rows[index - 1]?.hash);
      }
    });

    it.each<readonly [string, string]>([
      ['detail', `UPDATE audit_log SET detail = '{"n":999}' WHERE id = 3`],
      ['detail whitespace', `UPDATE audit_log SET detail = '{"n": 3}' WHERE id = 3`],
      ['at', "UPDATE audit_log SET at = '2000-01-01T00:00:00.000Z' WHERE id = 3"],
      ['actor', "UPDATE audit_log SET actor = 'operator:someone-else' WHERE id = 3"],
      ['action', "UPDATE audit_log SET action = 'step.harmless' WHERE id = 3"],
      ['result', "UPDATE audit_log SET result = 'ok' WHERE id = 3"],
      ['code', 'UPDATE audit_log SET code = NULL WHERE id = 3'],
      ['device_id', "UPDATE audit_log SET device_id = 'sensor-99' WHERE id = 3"],
      ...(backend.changes ?? []),
    ])('finds a changed %s at that entry', async (_column, sql) => {
      const { registry, tamper } = await withEntries(5);
      const intact = await registry.verifyAudit();
      await tamper.exec(sql);
      expect(await registry.verifyAudit()).toEqual({
        ok: false,
        entries: 2,
        firstBrokenId: 3,
        reason: 'entry 3 does not match its hash (its content was changed)',
        head: { id: 2, hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
      });
      expect(intact).toMatchObject({ ok: true, entries: 5, head: { id: 5 } });
    });

    it('finds a removed entry in the middle, at its id', async () => {
      const { registry, tamper } = await withEntries(5);
      await tamper.exec('DELETE FROM audit_log WHERE id = 3');
      expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 2, firstBrokenId: 3, reason: 'entry 3 is missing', head: { id: 2 } });
    });

    it('finds removed first entries', async () => {
      const { registry, tamper } = await withEntries(5);
      await tamper.exec('DELETE FROM audit_log WHERE id <= 2');
      expect(await registry.verifyAudit()).toEqual({ ok: false, entries: 0, firstBrokenId: 1, reason: 'entries 1 to 2 are missing' });
    });

    it('finds a removed tail, also after new entries were appended behind it', async () => {
      const { registry, tamper } = await withEntries(5);
      await tamper.exec('DELETE FROM audit_log WHERE id >= 4');
      expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entries 4 to 5 are missing from the end of the log' });

      // Ids are never reused: the next entry gets 6, and the hole stays visible.
      expect((await registry.appendAudit({ actor: 'system', action: 'later', result: 'ok' })).id).toBe(6);
      expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entries 4 to 5 are missing' });
    });

    it('finds a rewritten entry whose own hash was recomputed, at the next entry', async () => {
      const { registry, tamper } = await withEntries(5);
      const row = (await tamper.rows())[2] as ChainedAuditRow;
      const forged = { ...row, detail: '{"n":0}' };
      await tamper.rewrite(3, { detail: forged.detail, prevHash: row.prevHash, hash: rehash(forged, row.prevHash) });
      expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 3, firstBrokenId: 4, reason: 'entry 4 does not link to the hash of entry 3' });
    });

    it('finds a removal hidden by re-linking the entries after it, by the gap in ids', async () => {
      const { registry, tamper } = await withEntries(5);
      await tamper.exec('DELETE FROM audit_log WHERE id = 3');
      await relink(tamper, 2);
      expect(await registry.verifyAudit()).toMatchObject({ ok: false, firstBrokenId: 3, reason: 'entry 3 is missing' });
    });

    it('finds a forged entry inserted by hand (the triggers do not stop INSERT)', async () => {
      const { registry, tamper } = await withEntries(2);
      await tamper.forge(3);
      expect(await registry.verifyAudit()).toMatchObject({ ok: false, entries: 2, firstBrokenId: 3, reason: 'entry 3 does not link to the hash of entry 2' });
    });

    it('cannot tell a complete rewrite by itself, but a head written down earlier gives it away', async () => {
      // Anyone who can write the database can recompute every hash: the chain proves integrity relative to
      // a head kept somewhere else (the operator's notes, a ticket, another system's log).
      const { registry, tamper } = await withEntries(4);
      const recorded = await registry.verifyAudit();
      await tamper.exec(`UPDATE audit_log SET detail = '{"n":0}' WHERE id = 2`);
      await relink(tamper, 0);
      const after = await registry.verifyAudit();
      expect(after).toMatchObject({ ok: true, entries: 4, head: { id: 4 } });
      expect(after.head?.hash).not.toBe(recorded.head?.hash);
      expect(await registry.verifyAudit({ anchor: recorded.head! })).toEqual({
        ok: false,
        entries: 0,
        firstBrokenId: 1,
        reason: 'entry 4 no longer has the hash recorded for it (the log was rewritten)',
      });
    });

    it('accepts an anchor the log still contains, however much was appended since', async () => {
      const { registry } = await withEntries(3);
      const recorded = await registry.verifyAudit();
      for (let n = 0; n < 5; n += 1) await registry.appendAudit({ actor: 'system', action: 'later', result: 'ok' });
      expect(await registry.verifyAudit({ anchor: recorded.head! })).toMatchObject({ ok: true, entries: 8, head: { id: 8 } });
    });

    describe('queued entries (queueAudit: written in batches, nobody waits)', () => {
      const entry = (action: string) => ({ actor: 'device:sensor-1', action, result: 'ok' as const, deviceId: 'sensor-1', detail: { action } });
      // The registry swallows what an onError throws, so failures are collected and checked after each test.
      const failures: unknown[] = [];
      const unexpected = (error: unknown) => failures.push(error);
      afterEach(() => {
        expect(failures.splice(0)).toEqual([]);
      });
      /** Every entry's action, in id order. */
      const actions = async (registry: Registry) => (await registry.queryAudit({ afterId: 0, limit: 1000 })).map((written) => written.action);

      it('keeps one chain: entries queued before a durable write go before it', async () => {
        const { registry } = await withEntries(0);
        registry.queueAudit(entry('queued.1'), unexpected);
        registry.queueAudit(entry('queued.2'), unexpected);
        expect((await registry.appendAudit(entry('durable.1'))).id).toBe(3);
        registry.queueAudit(entry('queued.3'), unexpected);
        // Not awaited: the flush queued.3 scheduled and this write run concurrently; queued.3 still goes first.
        const durable = registry.appendAudit(entry('durable.2'));
        expect((await durable).id).toBe(5);
        registry.queueAudit(entry('queued.4'), unexpected);
        await registry.flushAudit();
        expect(await actions(registry)).toEqual(['queued.1', 'queued.2', 'durable.1', 'queued.3', 'durable.2', 'queued.4']);
        expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 6, head: { id: 6 } });
      });

      it('keeps queued entries when the durable write that took them along is refused', async () => {
        const { registry } = await withEntries(0);
        registry.queueAudit(entry('queued.1'), unexpected);
        await expect(registry.setDeviceStatus({ id: 'nobody', status: 'suspended', reason: null, audit: entry('device.suspend') })).rejects.toMatchObject({ code: 'DEVICE_NOT_FOUND' });
        registry.queueAudit(entry('queued.2'), unexpected);
        await registry.appendAudit(entry('durable.1'));
        expect(await actions(registry)).toEqual(['queued.1', 'queued.2', 'durable.1']);
        expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 3 });
      });

      it('writes many entries queued among concurrent durable writes as one intact chain', async () => {
        const { registry } = await withEntries(0);
        const durable: Promise<unknown>[] = [];
        for (let n = 0; n < 600; n += 1) {
          registry.queueAudit(entry(`queued.${n}`), unexpected);
          if (n % 100 === 50) durable.push(registry.appendAudit(entry(`durable.${n}`)));
          // Some entries arrive on later turns of the event loop, while a batch is being written.
          if (n % 150 === 0) await new Promise((resolve) => setImmediate(resolve));
        }
        await Promise.all(durable);
        expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 606, head: { id: 606 } });
        const queued = (await actions(registry)).filter((action) => action.startsWith('queued.'));
        expect(queued).toEqual(Array.from({ length: 600 }, (_, n) => `queued.${n}`));
      });

      it('writes what is still queued when the registry closes', async () => {
        const { registry, tamper } = await withEntries(1);
        for (let n = 0; n < 50; n += 1) registry.queueAudit(entry(`queued.${n}`), unexpected);
        await registry.close();
        const rows = await tamper.rows();
        expect(rows.map((row) => row.action)).toEqual(['step.1', ...Array.from({ length: 50 }, (_, n) => `queued.${n}`)]);
        for (const [index, row] of rows.entries()) {
          expect(row.hash).toBe(rehash(row, row.prevHash));
          expect(row.prevHash).toBe(index === 0 ? '0'.repeat(64) : rows[index - 1]?.hash);
        }
      });

      it('reports entries queued after close to their caller instead of throwing', async () => {
        const { registry } = await withEntries(0);
        await registry.close();
        const errors: unknown[] = [];
        registry.queueAudit(entry('late'), (error) => errors.push(error));
        expect(errors).toEqual([expect.objectContaining({ message: expect.stringMatching(/closed/) })]);
      });

      it('reports an entry that cannot be stored at once, and writes the others', async () => {
        const { registry } = await withEntries(0);
        const errors: unknown[] = [];
        registry.queueAudit(entry('queued.1'), unexpected);
        registry.queueAudit({ ...entry('unserialisable'), detail: { size: 1n } }, (error) => errors.push(error));
        registry.queueAudit(entry('queued.2'), unexpected);
        await registry.flushAudit();
        expect(errors).toHaveLength(1);
        expect(await actions(registry)).toEqual(['queued.1', 'queued.2']);
      });

      it('reports a batch the database refuses to each caller, and carries on once it accepts writes again', async () => {
        const { registry, tamper } = await withEntries(2);
        await tamper.exec(backend.refuseInserts.block);
        const errors: { action: string; error: unknown }[] = [];
        for (const action of ['lost.1', 'lost.2', 'lost.3']) registry.queueAudit(entry(action), (error) => errors.push({ action, error }));
        await registry.flushAudit();
        expect(errors.map((failure) => failure.action)).toEqual(['lost.1', 'lost.2', 'lost.3']);
        expect(String(errors[0]?.error)).toMatch(/refused for the test/);

        await tamper.exec(backend.refuseInserts.unblock);
        registry.queueAudit(entry('queued.after'), unexpected);
        await registry.appendAudit(entry('durable.after'));
        // Nothing of the refused batch was stored, and its ids were never handed out: no gap.
        expect(await actions(registry)).toEqual(['step.1', 'step.2', 'queued.after', 'durable.after']);
        expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 4, head: { id: 4 } });
      });
    });

    it('finds a cut tail with a reset id counter only through an anchor', async () => {
      const { registry, tamper } = await withEntries(5);
      const recorded = await registry.verifyAudit();
      await tamper.exec('DELETE FROM audit_log WHERE id >= 4');
      await tamper.resetCounter(3);
      expect(await registry.verifyAudit()).toMatchObject({ ok: true, entries: 3 });
      expect(await registry.verifyAudit({ anchor: recorded.head! })).toMatchObject({
        ok: false,
        entries: 3,
        firstBrokenId: 4,
        reason: 'entry 5, recorded earlier, is no longer in the log',
      });
    });
  });
}
