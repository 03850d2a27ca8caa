import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteRegistry, seedDefaults } from '../../registry/index.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';

/**
 * The registry holds every device, token hash and the audit trail: `fleetgate.db` and SQLite's `-wal` and
 * `-shm` files are readable by their owner only, whatever the umask, and an older world-readable database
 * is tightened when opened. The umask is opened wide (000) on purpose; vitest runs each file in its own
 * process (pool: forks), so no other test sees it.
 */
const mode = (path: string) => statSync(path).mode & 0o777;
let previousUmask: number;

beforeAll(() => {
  previousUmask = process.umask(0o000);
});
afterAll(() => {
  process.umask(previousUmask);
});

describe('SQLite registry file modes', () => {
  let gw: ApiUnderTest | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });

  it('creates fleetgate.db, -wal and -shm 0600 on a gateway start and a write', async () => {
    gw = await startApiUnderTest(); // opens the data directory as a gateway start does (cli/data-dir.ts)
    await gw.createDevice('mode-check'); // a write, so the WAL holds data
    const db = join(gw.dataDirPath, 'fleetgate.db');
    for (const path of [db, `${db}-wal`, `${db}-shm`]) {
      expect(existsSync(path), path).toBe(true);
      expect(mode(path).toString(8), path).toBe('600');
    }
  });

  it('tightens a world-readable database and its -wal/-shm left by an older version', async () => {
    const dir = makeTempDir('fleetgate-modes-');
    try {
      const db = join(dir.path, 'fleetgate.db');
      const first = await openSqliteRegistry({ path: db });
      await seedDefaults(first);
      await first.close();
      chmodSync(db, 0o644);
      // What a crash leaves behind: SQLite keeps using existing -wal/-shm files as they are.
      writeFileSync(`${db}-wal`, '', { mode: 0o644 });
      writeFileSync(`${db}-shm`, '', { mode: 0o666 });

      const reopened = await openSqliteRegistry({ path: db });
      await seedDefaults(reopened);
      for (const path of [db, `${db}-wal`, `${db}-shm`]) expect(mode(path).toString(8), path).toBe('600');
      await reopened.close();
    } finally {
      dir.remove();
    }
  });
});
