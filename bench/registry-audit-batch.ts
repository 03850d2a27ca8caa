/**
 * CONNECT audit rows written per second, and main-thread CPU per row, written the two ways the registry offers:
 * `appendAudit` (one write transaction each: on SQLite a synchronous fsync per row) and `queueAudit` (group
 * commit, registry/audit-queue.ts). The rows arrive as a gateway produces them under a reconnect burst: a
 * few per turn of the event loop, nobody waiting for any single one. Both ways run in alternating rounds
 * in the same process, on SQLite (a file on disk, synchronous FULL) and on PostgreSQL
 * when it answers (a schema of its own, dropped at the end). Every round ends with verifyAudit.
 *
 * Run: node --import tsx bench/registry-audit-batch.ts [--rows 2000] [--per-turn 10] [--rounds 4]
 *      [--postgres postgres://postgres@127.0.0.1:5432/test | --postgres none] [--dir DIR for the SQLite file]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { systemClock } from '../core/index.ts';
import { type AuditInput, openPostgresRegistry, openSqliteRegistry, type Registry } from '../registry/index.ts';
import { sampleCpu } from './process-cpu.ts';

const { values: flags } = parseArgs({
  options: {
    rows: { type: 'string', default: '2000' },
    'per-turn': { type: 'string', default: '10' },
    rounds: { type: 'string', default: '4' },
    postgres: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
    dir: { type: 'string' },
  },
});
const rows = Number(flags.rows);
const perTurn = Number(flags['per-turn']);
const rounds = Number(flags.rounds);

const connectEntry = (n: number): AuditInput => ({ actor: `device:sensor-${n}`, action: 'mqtt.connect', result: 'ok', deviceId: `sensor-${n}`, detail: { clientId: `sensor-${n}`, remote: '10.0.0.1' } });
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

type Way = (registry: Registry) => Promise<void>;
let failures = 0;

const ways: Record<string, Way> = {
  'appendAudit, one transaction each': async (registry) => {
    const writes: Promise<unknown>[] = [];
    for (let n = 0; n < rows; n++) {
      writes.push(registry.appendAudit(connectEntry(n)));
      if (n % perTurn === perTurn - 1) await nextTurn();
    }
    // The broker logs and drops a failed write; on PostgreSQL a burst can outwait the pool's connect timeout.
    failures += (await Promise.allSettled(writes)).filter((outcome) => outcome.status === 'rejected').length;
  },
  'queueAudit, group commit': async (registry) => {
    const failed = () => {
      failures += 1;
    };
    for (let n = 0; n < rows; n++) {
      registry.queueAudit(connectEntry(n), failed);
      if (n % perTurn === perTurn - 1) await nextTurn();
    }
    await registry.flushAudit();
  },
};

interface Round {
  readonly rowsPerSecond: number;
  readonly cpuMicrosPerRow: number;
  readonly failed: number;
}

async function measure(registry: Registry, way: Way): Promise<Round> {
  failures = 0;
  const before = sampleCpu(process.pid);
  const started = performance.now();
  await way(registry);
  const wall = (performance.now() - started) / 1000;
  const after = sampleCpu(process.pid);
  return { rowsPerSecond: Math.round((rows - failures) / wall), cpuMicrosPerRow: Math.round(((after.mainThreadSeconds - before.mainThreadSeconds) * 1e6) / rows), failed: failures };
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

async function compare(database: string, registry: Registry): Promise<void> {
  await ways['queueAudit, group commit']?.(registry); // warm-up: JIT, statement caches, pool connections
  const results = new Map<string, Round[]>(Object.keys(ways).map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? Object.entries(ways) : Object.entries(ways).reverse();
    for (const [name, way] of order) results.get(name)?.push(await measure(registry, way));
  }
  const verdict = await registry.verifyAudit();
  if (!verdict.ok) throw new Error(`audit chain broken: ${verdict.reason}`);
  for (const [name, runs] of results) {
    console.log(`${database}, ${name}: median ${median(runs.map((run) => run.rowsPerSecond))} rows/s, ${median(runs.map((run) => run.cpuMicrosPerRow))} µs main-thread CPU per row; rounds: ${runs.map((run) => run.rowsPerSecond).join(', ')}; rows not written: ${runs.map((run) => run.failed).join(', ')}`);
  }
  console.log(`${database}: chain verified, ${verdict.entries} entries`);
}

// --dir: where /tmp is tmpfs, fsync costs nothing there; point it at a disk.
const dir = mkdtempSync(join(flags.dir ?? tmpdir(), 'fleetgate-audit-batch-'));
try {
  const sqlite = await openSqliteRegistry({ path: join(dir, 'fleetgate.db'), clock: systemClock });
  try {
    await compare(`SQLite (${rows} rows, ${perTurn} per turn)`, sqlite);
  } finally {
    await sqlite.close();
  }
  if (flags.postgres !== 'none') {
    const schema = `fg_bench_${randomBytes(4).toString('hex')}`;
    let postgres: Registry | undefined;
    try {
      postgres = await openPostgresRegistry({ url: flags.postgres, schema, clock: systemClock });
    } catch (error) {
      console.log(`PostgreSQL skipped: ${(error as Error).message}`);
    }
    if (postgres !== undefined) {
      try {
        await compare(`PostgreSQL (${rows} rows, ${perTurn} per turn)`, postgres);
      } finally {
        await postgres.close();
        const admin = new pg.Client({ connectionString: flags.postgres });
        await admin.connect();
        await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
        await admin.end();
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
