import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { FleetgateError } from '../core/index.ts';
import { type ApiClientOptions, type ApiResponse, apiRequest } from './api-client.ts';
import { resolveDataDir } from './config.ts';

export interface OperatorOptions {
  api?: string;
  dataDir?: string;
  ca?: string;
  json?: boolean;
}

/** The options every operator/factory subcommand shares. */
export function withOperatorOptions(command: Command): Command {
  return command
    .addOption(new Option('--api <url>', 'API base URL (env FLEETGATE_API)').default(undefined, 'https://localhost:8443'))
    .addOption(new Option('--data-dir <dir>', 'where admin.token and pki/ca.crt are read (env FLEETGATE_DATA_DIR)').default(undefined, './data'))
    .option('--ca <file>', 'CA certificates to verify the API with (default <data-dir>/pki/trust-bundle.pem, else pki/ca.crt)')
    .option('--json', 'print one JSON document for scripts');
}

/**
 * How a subcommand reaches the API: URL, bootstrap or personal token (FLEETGATE_TOKEN wins over the file),
 * and the CA to verify the server with. Missing pieces are reported with what to do about them.
 */
export function operatorClient(options: OperatorOptions, env: NodeJS.ProcessEnv = process.env): ApiClientOptions {
  const dataDir = resolveDataDir(options.dataDir, env);
  // The trust bundle provisioning keeps current through CA rotations, else the first root (README "Rotating certificates and CAs").
  const bundlePath = join(dataDir, 'pki', 'trust-bundle.pem');
  const caPath = options.ca ?? (existsSync(bundlePath) ? bundlePath : join(dataDir, 'pki', 'ca.crt'));
  if (!existsSync(caPath)) throw new Error(`cannot find the CA certificate ${caPath}; pass --ca FILE or --data-dir DIR of the gateway`);
  const tokenPath = join(dataDir, 'admin.token');
  const token = env.FLEETGATE_TOKEN ?? (existsSync(tokenPath) ? readFileSync(tokenPath, 'utf8').trim() : undefined);
  if (!token) throw new Error(`no operator token: set FLEETGATE_TOKEN or pass --data-dir of the gateway (reads ${tokenPath})`);
  const client = { baseUrl: options.api ?? env.FLEETGATE_API ?? 'https://localhost:8443', ca: readFileSync(caPath, 'utf8'), token };
  sources.set(client, { caPath, ...(env.FLEETGATE_TOKEN === undefined ? { tokenPath } : {}) });
  return client;
}

/** Where a client's CA and token came from, so a refusal can say which local file does not fit the API. */
const sources = new WeakMap<ApiClientOptions, { caPath: string; tokenPath?: string }>();

// Node's codes for a server certificate that does not chain to the CA we trust.
const untrustedServer = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE']);

/** Calls the API and turns an error answer into the same coded error the server raised. */
export async function callApi<T>(client: ApiClientOptions, method: string, path: string, body?: unknown): Promise<T> {
  let response: ApiResponse<T | { code?: string; message?: string }>;
  try {
    response = await apiRequest<T | { code?: string; message?: string }>(client, method, path, body);
  } catch (error) {
    const source = sources.get(client);
    if (source !== undefined && untrustedServer.has(String((error as NodeJS.ErrnoException).code))) {
      throw new Error(`the API at ${client.baseUrl} is not signed by the CA in ${source.caPath}: that data directory (or --ca) belongs to another deployment than --api`, { cause: error });
    }
    throw new Error(`cannot reach the fleetgate API at ${client.baseUrl} (${(error as Error).message}); is \`fleetgate serve\` running? Use --api URL otherwise.`, { cause: error });
  }
  if (response.status >= 400) {
    const problem = response.body as { code?: string; message?: string };
    const tokenPath = sources.get(client)?.tokenPath;
    // The bootstrap token read from a local file: after a rotation elsewhere, or from another deployment's directory.
    const hint = response.status === 401 && tokenPath !== undefined ? ` The token came from ${tokenPath}: it was rotated since, or belongs to another deployment; set FLEETGATE_TOKEN or --data-dir.` : '';
    throw new FleetgateError(isKnownCode(problem.code) ? problem.code : 'INTERNAL', { message: (problem.message ?? `HTTP ${response.status}`) + hint });
  }
  return response.body as T;
}

function isKnownCode(code: unknown): code is ConstructorParameters<typeof FleetgateError>[0] {
  return typeof code === 'string' && /^[A-Z_]+$/.test(code);
}
