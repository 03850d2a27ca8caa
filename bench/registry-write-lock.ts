import { CompiledQuery } from 'kysely';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { systemClock } from '../core/index.ts';
import { migrate } from '../registry/migrate.ts';
import { postgresDialect } from '../registry/postgres/postgres-dialect.ts';
import type { Registry } from '../registry/registry-port.ts';
import { seedDefaults } from '../registry/seed-defaults.ts';
import { SqlRegistry } from '../registry/sql-registry.ts';
import { type AuditTip, auditTipQuery, type StorageDialect } from '../registry/storage-dialect.ts';

/**
 * How PostgreSQL should serialise the registry's writes (issue 15: "advisory lock or SERIALIZABLE with
 * retry: measure"). Claim enrollments (the write with the most reads and rows: claim, device, allow-list,
 * same-key certificate, then device, certificate, claim use and a hash-chained audit entry) from several
 * connections at once, two ways:
 *   - lock: READ COMMITTED under the transaction-scoped advisory lock (what the registry does);
 *   - serializable: SERIALIZABLE without the lock, the whole transaction retried on 40001/40P01/23505.
 * Every write appends to one hash chain (the next id, the tip's hash, the one counter row), so both end up
 * one writer at a time; the question is what the losers cost. Loopback PostgreSQL only; a fresh schema per
 * run, dropped at the end.
 *
 *   node --import tsx bench/registry-write-lock.ts [--writes 2000] [--lanes 16]
 */

const url = process.env.FLEETGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const argument = (name: string, fallback: number) => {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
};
const writes = argument('writes', 2_000);
const lanes = argument('lanes', 16);

/** SERIALIZABLE instead of the lock: a transaction that lost a conflict is run again from the start. */
function serializable(dialect: StorageDialect): { dialect: StorageDialect; retries: () => number } {
  let retries = 0;
  const retryable = new Set(['40001', '40P01', '23505']);
  return {
    retries: () => retries,
    dialect: {
      ...dialect,
      async beginWrite(connection) {
        await connection.executeQuery(CompiledQuery.raw('BEGIN ISOLATION LEVEL SERIALIZABLE'));
        return (await connection.executeQuery<AuditTip>(CompiledQuery.raw(auditTipQuery(dialect.auditCounter)))).rows[0] as AuditTip;
      },
      async queueWrite(work) {
        for (;;) {
          try {
            return await work();
          } catch (error) {
            const code = (error as { code?: string; cause?: { code?: string } }).code ?? (error as { cause?: { code?: string } }).cause?.code;
            if (code === undefined || !retryable.has(code)) throw error;
            retries += 1;
          }
        }
      },
    },
  };
}

async function run(mode: 'lock' | 'serializable'): Promise<Record<string, number | string>> {
  const schema = `fg_bench_${randomBytes(4).toString('hex')}`;
  const base = await postgresDialect({ url, schema, maxConnections: lanes });
  await migrate(base);
  const variant = mode === 'lock' ? { dialect: base, retries: () => 0 } : serializable(base);
  const registry: Registry = new SqlRegistry(variant.dialect, systemClock);
  try {
    await seedDefaults(registry);
    await registry.createClaim({ id: 'bench', template: 'default', certificateSerial: 'b1', maxUses: null, expiresAt: new Date(Date.now() + 86_400_000) }, { actor: 'bench', action: 'claim.create', result: 'ok' });
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: lanes }, async () => {
        for (let n = next++; n < writes; n = next++) {
          const serial = `sn-${n}`;
          await registry.enrollWithClaim({
            claimId: 'bench',
            device: { id: serial, kind: 'device', template: 'default' },
            certificate: { serial: n.toString(16).padStart(8, '0'), fingerprint: `fp-${n}`, publicKeyHash: `pk-${n}`, notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000), pem: 'pem' },
            requireAllowlist: false,
            allowReenroll: false,
            audit: { actor: `claim:${serial}`, action: 'device.enroll', result: 'ok', deviceId: serial, detail: { claimId: 'bench' } },
          });
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const verdict = await registry.verifyAudit();
    return { mode, writes, lanes, perSecond: Math.round(writes / seconds), retries: variant.retries(), auditIntact: String(verdict.ok), uses: (await registry.getClaim('bench'))?.uses ?? -1 };
  } finally {
    await registry.close();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
}

const results = [];
for (const mode of ['lock', 'serializable', 'lock', 'serializable'] as const) results.push(await run(mode));
console.table(results);
