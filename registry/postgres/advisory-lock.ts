import { createHash } from 'node:crypto';

/**
 * The 64-bit key of one of fleetgate's advisory locks, as a SQL integer literal. Advisory locks are
 * database-wide, so the key includes the schema: registries in different schemas of one database (a test
 * run, two installations) never wait for each other. A hash, not a constant, so it stays clear of keys
 * other applications sharing the database might pick.
 */
export function advisoryLockKey(purpose: 'migrate' | 'write', schema: string): string {
  return createHash('sha256').update(`fleetgate:${purpose}:${schema}`).digest().readBigInt64BE(0).toString();
}
