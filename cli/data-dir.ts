import type { Logger } from 'pino';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { activeCa, type Clock, systemClock } from '../core/index.ts';
import {
  type CertificateAuthorities,
  ensureServerCertificate,
  hasPki,
  type KeyStores,
  loadOrCreateAdminToken,
  loadOrCreatePki,
  openCertificateAuthorities,
  openKeyStores,
  type Pki,
  pkiDir,
} from '../provisioning/index.ts';
import { openRegistry, type Registry, seedDefaults } from '../registry/index.ts';
import { ConfigError } from './config.ts';

export interface DataDir {
  readonly path: string;
  /** The first CAs, as `fleetgate init` wrote them. */
  readonly pki: Pki;
  /** Every CA of the installation with its key, as rotations left them: what issues, and what is trusted. */
  readonly authorities: CertificateAuthorities;
  readonly registry: Registry;
  /** The CA key stores this process opened (files in pki/, PKCS#11 tokens). */
  readonly keyStores: KeyStores;
  readonly adminToken: string;
  /** What this call created, for the first-start message. */
  readonly created: readonly string[];
}

/**
 * Opens (and on first use creates) the data directory: PKI, bootstrap admin token, and the registry (SQLite
 * in the directory, or PostgreSQL at `databaseUrl`) with the default policies and template. Existing files
 * are reused, never overwritten.
 */
export async function openDataDir(options: {
  path: string;
  hostnames?: readonly string[];
  clock?: Clock;
  databaseUrl?: string | undefined;
  onRegistryError?: (error: Error) => void;
  /** Where `fleetgate init` makes new CA keys: a PKCS#11 URI (README "CA keys in an HSM"); default files in pki/. */
  keyStore?: string | undefined;
}): Promise<DataDir> {
  const clock = options.clock ?? systemClock;
  await refuseForeignRegistry(options.path, options.databaseUrl, clock);
  mkdirSync(options.path, { recursive: true, mode: 0o700 });
  const keyStores = openKeyStores(pkiDir(options.path));
  const pki = await loadOrCreatePki({ dataDir: options.path, clock, keyStore: options.keyStore, keyStores });
  const token = loadOrCreateAdminToken(options.path);
  const registry = await openConfiguredRegistry({
    dataDir: options.path,
    databaseUrl: options.databaseUrl,
    clock,
    ...(options.onRegistryError === undefined ? {} : { onError: options.onRegistryError }),
  });
  await seedDefaults(registry);
  const hostnames = options.hostnames ?? [];
  const server = (root: Pki['root']) => ensureServerCertificate({ dataDir: options.path, root, hostnames, clock });
  const authorities = await openCertificateAuthorities({
    registry,
    pkiDir: pkiDir(options.path),
    initial: pki,
    initialKeyFiles: pki.keyRefs,
    keyStores,
    clock,
    renewServerCertificate: async (root) => void (await server(root)),
  });
  await server(await authorities.credential(activeCa(authorities.list(), 'root').id));
  const created = [...(pki.created ? ['PKI (root, device and claim CAs)'] : []), ...(token.created ? ['admin token'] : [])];
  return { path: options.path, pki, authorities, registry, keyStores, adminToken: token.token, created };
}

/**
 * A data directory without CAs pointed at a PostgreSQL registry that already serves a deployment (it has
 * templates, which the first start of any process seeds): new CAs made here would sign certificates that
 * deployment's brokers do not trust, beside its devices. Refused before anything is written; the CAs and
 * admin.token come from the deployment's own data directory (README "Scaling out").
 */
async function refuseForeignRegistry(path: string, databaseUrl: string | undefined, clock: Clock): Promise<void> {
  if (databaseUrl === undefined || hasPki(path)) return;
  const registry = await openConfiguredRegistry({ dataDir: path, databaseUrl, clock });
  try {
    if ((await registry.listTemplates()).length === 0) return;
  } finally {
    await registry.close();
  }
  throw new ConfigError([
    `the PostgreSQL registry (FLEETGATE_DATABASE_URL / --database-url) already serves a fleetgate deployment, but ${path} has no CAs: ` +
      'copy the data directory (pki/ and admin.token) of that deployment here, or use an empty database for a new one',
  ]);
}

/**
 * The registry a process uses: PostgreSQL when a database URL is given (the PKI stays in the data
 * directory), else SQLite in the data directory. `onError` hears about PostgreSQL connections the pool lost
 * and replaces by itself (calls caught by them reject on their own); default: a process warning.
 */
export async function openConfiguredRegistry(options: { dataDir: string; databaseUrl: string | undefined; clock: Clock; onError?: (error: Error) => void }): Promise<Registry> {
  return openRegistry(options.databaseUrl ?? join(options.dataDir, 'fleetgate.db'), {
    clock: options.clock,
    ...(options.onError === undefined ? {} : { onError: options.onError }),
  });
}

/** PostgreSQL connections the pool lost: logged once each; calls fail (and brokers refuse sessions) until it is back. */
export function registryErrorLogger(log: Logger): (error: Error) => void {
  return (error) => log.warn({ err: error.message }, 'registry connection lost; PostgreSQL calls fail until it is back');
}
