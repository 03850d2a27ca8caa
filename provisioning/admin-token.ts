import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSecret } from './pki-store.ts';

/** The bootstrap operator token (`<data>/admin.token`, 0600): 256 random bits, base64url. */
export function loadOrCreateAdminToken(dataDir: string): { token: string; created: boolean } {
  const path = join(dataDir, 'admin.token');
  if (existsSync(path)) return { token: readFileSync(path, 'utf8').trim(), created: false };
  const token = newAdminToken();
  writeSecret(path, token + '\n');
  return { token, created: true };
}

/** A bootstrap token: 256 random bits, base64url (the first one, and each one a rotation makes). */
export function newAdminToken(): string {
  return randomBytes(32).toString('base64url');
}
