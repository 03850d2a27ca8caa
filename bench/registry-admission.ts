/**
 * CONNECT admission lookups per second on SQLite (registry.getAdmission, the broker's registry read per
 * CONNECT, broker/session-admission.ts), against the previous two-statement form kept below as a frozen
 * copy: certificate + device + template joined, then the policy in a second statement. Both run over the
 * same file in the same process, in alternating rounds, so machine noise hits both alike; each round
 * reports lookups/s (wall) and main-thread CPU µs per lookup. A third variant builds the new statement with
 * Kysely on every call, to tell the gain of the single statement from that of compiling it once.
 *
 * Run: node --import tsx bench/registry-admission.ts [--devices 200] [--lookups 5000] [--rounds 6]
 */
import { type Kysely, sql } from 'kysely';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultDevicePolicy, effectivePolicyName, systemClock } from '../core/index.ts';
import { openSqliteRegistry, type Registry, seedDefaults } from '../registry/index.ts';
import { admissionStatement, deviceColumns } from '../registry/sql-registry.ts';
import { sqliteDialect } from '../registry/sqlite/sqlite-dialect.ts';
import { fromJson, type Tables, toDate } from '../registry/storage-dialect.ts';
import { sampleCpu } from './process-cpu.ts';

const { values: flags } = parseArgs({ options: { devices: { type: 'string', default: '200' }, lookups: { type: 'string', default: '5000' }, rounds: { type: 'string', default: '6' } } });
const devices = Number(flags.devices);
const lookups = Number(flags.lookups);
const rounds = Number(flags.rounds);
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-admission-'));
const path = join(dir, 'fleetgate.db');

/** The admission read before the policy joined the statement (registry/sql-registry.ts at ebd87d9), mapping included. */
async function twoStatementAdmission(db: Kysely<Tables>, registry: Registry, serial: string): Promise<unknown> {
  const row = await db
    .selectFrom('certificates as c')
    .innerJoin('devices as d', 'd.id', 'c.device_id')
    .leftJoin('templates as t', 't.name', 'd.template')
    .selectAll('c')
    .select(deviceColumns.map((column) => sql.ref(`d.${column}`).as(`d_${column}`)))
    .select(['t.policy as template_policy', 't.limits as template_limits'])
    .where('c.serial', '=', serial)
    .executeTakeFirst();
  if (row === undefined) return undefined;
  const { template_policy: templatePolicy, template_limits: limits, ...columns } = row as Record<string, unknown>;
  const of = (device: boolean) => Object.fromEntries(Object.entries(columns).flatMap(([key, value]) => (key.startsWith('d_') === device ? [[device ? key.slice(2) : key, value]] : [])));
  const device = camel(of(true)) as { policy: string | null };
  const policyName = effectivePolicyName(device, templatePolicy == null ? undefined : { policy: templatePolicy as string });
  const policy = policyName === null ? undefined : await registry.getPolicy(policyName);
  return { certificate: camel(of(false)), device, policy, limits: limits == null ? {} : fromJson(limits) };
}

/** The one-statement read as getAdmission makes it, but built and compiled by Kysely on every call. */
async function oneStatementBuiltPerCall(db: Kysely<Tables>, serial: string): Promise<unknown> {
  const row = await admissionStatement(db, serial).executeTakeFirst();
  if (row === undefined) return undefined;
  const { template_policy: templatePolicy, ...columns } = row as Record<string, unknown>;
  const device = camel(Object.fromEntries(Object.entries(columns).filter(([key]) => key.startsWith('d_')))) as { policy: string | null };
  const policyName = effectivePolicyName(device, templatePolicy == null ? undefined : { policy: templatePolicy as string });
  return { device, policyName, certificate: camel(Object.fromEntries(Object.entries(columns).filter(([key]) => !/^(d|dp|tp)_/.test(key)))) };
}

/** What the registry's toRecord does to a row, near enough for the cost (field names, dates, JSON). */
function camel(row: Record<string, unknown>): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) {
    const field = column.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());
    record[field] = value === null ? null : column.endsWith('_at') || column.startsWith('not_') ? toDate(value as string) : column.includes('attributes') ? fromJson(value) : value;
  }
  return record;
}

interface Round {
  readonly perSecond: number;
  readonly cpuMicros: number;
}

async function measure(serials: readonly string[], lookup: (serial: string) => Promise<unknown>): Promise<Round> {
  const before = sampleCpu(process.pid);
  const started = performance.now();
  for (let i = 0; i < lookups; i++) {
    if ((await lookup(serials[i % serials.length] as string)) === undefined) throw new Error('admission not found');
  }
  const wall = (performance.now() - started) / 1000;
  const after = sampleCpu(process.pid);
  return { perSecond: Math.round(lookups / wall), cpuMicros: Math.round(((after.mainThreadSeconds - before.mainThreadSeconds) * 1e6) / lookups) };
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

try {
  const registry = await openSqliteRegistry({ path, clock: systemClock });
  await seedDefaults(registry);
  await registry.putPolicy('backend', defaultDevicePolicy, { actor: 'bench', action: 'policy.put', result: 'ok' });
  const serials: string[] = [];
  for (let n = 0; n < devices; n++) {
    const serial = (0x1000 + n).toString(16);
    // One in ten has a policy of its own (a service identity), the rest their template's.
    const own = n % 10 === 0;
    await registry.registerCertificate({
      device: { id: `bench-${n}`, kind: own ? 'service' : 'device', template: 'default', policy: own ? 'backend' : null },
      certificate: { serial, fingerprint: `fp-${n}`, publicKeyHash: `pk-${n}`, notBefore: new Date('2025-01-01T00:00:00Z'), notAfter: new Date('2035-01-01T00:00:00Z'), pem: 'pem' },
      mustBeNew: true,
      audit: { actor: 'bench', action: 'device.register', result: 'ok' },
    });
    serials.push(serial);
  }
  const old = sqliteDialect(path);
  const variants = {
    'two statements (before)': (serial: string) => twoStatementAdmission(old.db, registry, serial),
    'one statement, built per call': (serial: string) => oneStatementBuiltPerCall(old.db, serial),
    'one statement (getAdmission)': (serial: string) => registry.getAdmission(serial),
  };
  for (const lookup of Object.values(variants)) for (let i = 0; i < 500; i++) await lookup(serials[i % serials.length] as string); // JIT and statement caches
  const results = new Map<string, Round[]>(Object.keys(variants).map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    // Alternating which goes first, so neither always runs right after a GC of the other's garbage.
    const order = round % 2 === 0 ? Object.entries(variants) : Object.entries(variants).reverse();
    for (const [name, lookup] of order) results.get(name)?.push(await measure(serials, lookup));
  }
  for (const [name, runs] of results) {
    console.log(`${name}: median ${median(runs.map((run) => run.perSecond))} lookups/s, ${median(runs.map((run) => run.cpuMicros))} µs main-thread CPU per lookup; rounds: ${runs.map((run) => run.perSecond).join(', ')}`);
  }
  await old.close();
  await registry.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
