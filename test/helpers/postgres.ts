import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

/**
 * The PostgreSQL that runs on every development and CI machine (trust auth, database `test`). Tests never
 * touch its public schema: each registry gets a schema of its own, and every schema a test file made is
 * dropped when it ends.
 */
export const testDatabaseUrl = process.env.FLEETGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestSchemas {
  /** A new, unused schema name (the registry creates the schema when it opens). */
  fresh(): string;
  /** A plain connection with `search_path` on `schema`, as an operator with psql would have. */
  connect(schema: string): Promise<pg.Client>;
  /** Drops every schema handed out, and closes every connection opened by `connect`. */
  dropAll(): Promise<void>;
}

export function testSchemas(): TestSchemas {
  const run = `fg_test_${randomBytes(4).toString('hex')}`;
  const names: string[] = [];
  const clients: pg.Client[] = [];
  return {
    fresh() {
      const name = `${run}_${names.length + 1}`;
      names.push(name);
      return name;
    },
    async connect(schema) {
      const client = new pg.Client({ connectionString: testDatabaseUrl, options: `-c search_path=${schema}` });
      await client.connect();
      clients.push(client);
      return client;
    },
    async dropAll() {
      for (const client of clients.splice(0)) await client.end().catch(() => undefined);
      const admin = new pg.Client({ connectionString: testDatabaseUrl });
      await admin.connect();
      try {
        for (const name of names.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
      } finally {
        await admin.end();
      }
    },
  };
}

/** `testDatabaseUrl` with another host:port, e.g. a proxy in front of the server. */
export function databaseUrlVia(port: number, schema?: string): string {
  const url = new URL(testDatabaseUrl);
  url.host = `127.0.0.1:${port}`;
  if (schema !== undefined) url.searchParams.set('schema', schema);
  return url.toString();
}

/** A TCP proxy in front of the test PostgreSQL, standing in for a database server that goes away. */
export async function startPostgresProxy(): Promise<TcpProxy> {
  const upstream = new URL(testDatabaseUrl);
  return startTcpProxy(Number(upstream.port || 5432), upstream.hostname);
}
