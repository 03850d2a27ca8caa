import { Agent, request } from 'node:https';

export interface ApiClientOptions {
  /** e.g. https://localhost:8443 */
  readonly baseUrl: string;
  /** Root CA the API's server certificate chains to. */
  readonly ca: string;
  readonly token?: string;
  /** Client certificate (claim or device) for enrollment, renewal and EST. */
  readonly cert?: string;
  readonly key?: string;
  /** Reuse TLS connections across calls (benchmarks, long-running tools). Off for the CLI, which exits. */
  readonly keepAlive?: boolean;
}

const agents = new WeakMap<ApiClientOptions, Agent>();
function agentFor(options: ApiClientOptions): Agent | undefined {
  if (!options.keepAlive) return undefined;
  let agent = agents.get(options);
  if (agent === undefined) {
    agent = new Agent({ keepAlive: true, ca: options.ca, ...(options.cert ? { cert: options.cert, key: options.key } : {}) });
    agents.set(options, agent);
  }
  return agent;
}

/** Closes the kept-alive connections of these options, if any. */
export function closeApiClient(options: ApiClientOptions): void {
  agents.get(options)?.destroy();
  agents.delete(options);
}

export interface ApiResponse<T = unknown> {
  readonly status: number;
  readonly body: T;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** One HTTPS call to the fleetgate API. JSON in and out unless a content type says otherwise. */
export function apiRequest<T = unknown>(
  options: ApiClientOptions,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<ApiResponse<T>> {
  const url = new URL(path, options.baseUrl);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent: agentFor(options),
        ca: options.ca,
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
        servername: url.hostname === '127.0.0.1' ? undefined : url.hostname,
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }),
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const isJson = String(res.headers['content-type'] ?? '').includes('json');
          resolve({ status: res.statusCode ?? 0, body: (isJson && text ? JSON.parse(text) : text) as T, headers: res.headers });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within 30 s`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
