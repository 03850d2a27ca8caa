import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {} from '@fastify/swagger'; // brings in the type of `app.swagger()`
import { pino } from 'pino';
import { createInProcessEventBus, systemClock } from '../core/index.ts';
import { resolveServeConfig } from '../cli/config.ts';
import { openDataDir } from '../cli/data-dir.ts';
import { createProvisioning } from '../cli/provisioning-api.ts';

/**
 * docs/api-reference.md, generated from what the API itself serves: its OpenAPI document (`app.swagger()`)
 * for routes, parameters, bodies and answers, and — because roles are enforced in code, not declared in
 * OpenAPI — the answer each route gives to a request carrying each role's token (401/403 = refused).
 * Built in-process on a throwaway data directory, so the reference can never describe another API than
 * the one `buildApi` (provisioning/api/build-api.ts) builds.
 */

interface Schema {
  readonly type?: string | readonly string[];
  readonly description?: string;
  readonly enum?: readonly unknown[];
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  readonly items?: Schema;
  readonly format?: string;
  readonly pattern?: string;
  readonly nullable?: boolean;
  readonly maxLength?: number;
  readonly minimum?: number;
  readonly maximum?: number;
}
interface Parameter {
  readonly in: string;
  readonly name: string;
  readonly required?: boolean;
  readonly description?: string;
  readonly schema?: Schema;
}
interface Operation {
  readonly summary?: string;
  readonly description?: string;
  readonly tags?: readonly string[];
  readonly security?: readonly unknown[];
  readonly parameters?: readonly Parameter[];
  readonly requestBody?: { readonly required?: boolean; readonly content?: Readonly<Record<string, { readonly schema?: Schema }>> };
  readonly responses?: Readonly<Record<string, { readonly description?: string; readonly content?: Readonly<Record<string, { readonly schema?: Schema }>> }>>;
}
export interface OpenApiDocument {
  readonly paths: Readonly<Record<string, Readonly<Record<string, Operation>>>>;
}

/** Who passed a route's authentication and role check: everyone, these roles, or only a TLS client certificate. */
export type RouteAccess = { readonly kind: 'anyone' } | { readonly kind: 'roles'; readonly roles: readonly string[] } | { readonly kind: 'certificate' };

export interface ApiDescription {
  readonly document: OpenApiDocument;
  /** Keyed by `METHOD path`, as in the OpenAPI document. */
  readonly access: ReadonlyMap<string, RouteAccess>;
}

const roles = ['admin', 'operator', 'station', 'viewer', 'broker'] as const;
const methods = ['get', 'put', 'post', 'delete', 'patch'] as const;

/** Builds the API as `fleetgate serve` does (cli/provisioning-api.ts) and reads its description. */
export async function describeBuiltApi(): Promise<ApiDescription> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-api-reference-'));
  const log = pino({ level: 'silent' });
  const dataDir = await openDataDir({ path: dir, hostnames: ['localhost'] });
  try {
    const config = resolveServeConfig({ dataDir: dir, host: '127.0.0.1', mqttPort: '0', apiPort: '0', hostname: 'localhost' }, { FLEETGATE_LOG_LEVEL: 'silent' });
    const provisioning = createProvisioning(config, { dataDir, events: createInProcessEventBus(), clock: systemClock, log });
    const app = await provisioning.buildApi({ list: async () => [] });
    try {
      await app.ready(); // the OpenAPI document is complete once every route is registered
      const document = app.swagger() as unknown as OpenApiDocument;
      const tokens = new Map<string, string>([['admin', dataDir.adminToken]]);
      for (const role of roles.filter((r) => r !== 'admin')) {
        const answer = await app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: `Bearer ${dataDir.adminToken}` }, payload: { name: `reference-${role}`, role } });
        if (answer.statusCode !== 201) throw new Error(`could not create a ${role} token: ${answer.statusCode} ${answer.body}`);
        tokens.set(role, (answer.json() as { token: string }).token);
      }
      const access = new Map<string, RouteAccess>();
      for (const [path, operations] of Object.entries(document.paths)) {
        for (const method of methods) {
          const operation = operations[method];
          if (operation === undefined) continue;
          // Placeholders name nothing that exists. The body is the smallest one its schema accepts, so a
          // route that asks for a client certificate in its handler gets that far instead of answering 400.
          // Whatever an allowed probe changes, it changes in this throwaway registry.
          const url = path.replace(/\{[^}]+\}/g, 'reference-missing');
          const json = operation.requestBody?.content?.['application/json']?.schema;
          const body = method === 'get' ? {} : json !== undefined ? { payload: minimalValue(json) as object } : { payload: '', headers: { 'content-type': 'application/pkcs10' } };
          const passes = async (token: string | undefined): Promise<boolean> => {
            const answer = await app.inject({
              method: method.toUpperCase() as 'GET',
              url,
              ...body,
              headers: { ...('headers' in body ? body.headers : {}), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
            });
            if (answer.statusCode >= 500) throw new Error(`${method.toUpperCase()} ${path} answered a probe with ${answer.statusCode}: ${answer.body}`);
            return answer.statusCode !== 401 && answer.statusCode !== 403;
          };
          const key = `${method.toUpperCase()} ${path}`;
          if (await passes(undefined)) {
            access.set(key, { kind: 'anyone' });
            continue;
          }
          const allowed: string[] = [];
          for (const role of roles) if (await passes(tokens.get(role))) allowed.push(role);
          access.set(key, allowed.length === 0 ? { kind: 'certificate' } : { kind: 'roles', roles: allowed });
        }
      }
      return { document, access };
    } finally {
      await app.close();
    }
  } finally {
    await dataDir.registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The smallest value a JSON schema accepts, as far as a probe needs: required fields only. */
function minimalValue(schema: Schema): unknown {
  if (schema.enum !== undefined) return schema.enum[0];
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === 'object' || schema.properties !== undefined) {
    return Object.fromEntries((schema.required ?? []).map((name) => [name, minimalValue(schema.properties?.[name] ?? {})]));
  }
  if (type === 'array') return [];
  if (type === 'integer' || type === 'number') return schema.minimum ?? 1;
  if (type === 'boolean') return false;
  return 'reference';
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');

function typeOf(schema: Schema | undefined): string {
  if (schema === undefined) return 'any';
  if (schema.enum !== undefined) return schema.enum.map((value) => `\`${String(value)}\``).join(' \\| ');
  const type = Array.isArray(schema.type) ? schema.type.join(' or ') : ((schema.type as string | undefined) ?? 'any');
  if (type === 'array') return `array of ${typeOf(schema.items)}`;
  const extras = [schema.format, schema.nullable === true ? 'nullable' : undefined].filter((x) => x !== undefined);
  return extras.length === 0 ? type : `${type} (${extras.join(', ')})`;
}

function constraints(schema: Schema | undefined): string {
  if (schema === undefined) return '';
  const parts = [
    schema.description,
    schema.pattern === undefined ? undefined : `pattern \`${schema.pattern}\``,
    schema.maxLength === undefined ? undefined : `at most ${schema.maxLength} characters`,
    schema.minimum === undefined ? undefined : `minimum ${schema.minimum}`,
    schema.maximum === undefined ? undefined : `maximum ${schema.maximum}`,
  ];
  return parts.filter((x) => x !== undefined).join('; ');
}

/** One line saying what an answer's body holds: its top-level fields, or the fields of its items. */
function shapeOf(schema: Schema | undefined): string {
  if (schema === undefined) return '';
  if (schema.type === 'array') return `array of ${schema.items?.properties === undefined ? typeOf(schema.items) : `{${Object.keys(schema.items.properties).join(', ')}}`}`;
  if (schema.properties !== undefined) return `{${Object.keys(schema.properties).join(', ')}}`;
  return typeOf(schema);
}

function describeAccess(access: RouteAccess | undefined): string {
  if (access === undefined) return 'unknown';
  if (access.kind === 'anyone') return 'anyone (no credential)';
  if (access.kind === 'certificate') return 'a TLS client certificate (no operator token reaches it; see the summary)';
  return `${access.roles.map((role) => `\`${role}\``).join(', ')} (bearer token, or an operator certificate of that role)`;
}

/** The Markdown reference; deterministic for a given API. */
export function renderApiReference({ document, access }: ApiDescription): string {
  const out: string[] = [
    '# fleetgate HTTPS API reference',
    '',
    '<!-- Generated by `npm run docs:api` (docs/generate-api-reference.ts) from the OpenAPI document the API',
    '     serves; test/docs/api-reference.test.ts fails when it is stale. Do not edit by hand. -->',
    '',
    'Generated from the OpenAPI document the API serves at `/openapi.json` (browsable at `/docs`). The base URL',
    'is `https://<host>:8443`; the server certificate is the one MQTT uses. Operator routes take',
    '`Authorization: Bearer <token>` (the bootstrap `admin.token` or a personal `fgt_…` token), or an operator',
    'certificate as TLS client certificate; the roles listed for each route are the ones the running code',
    'admits, found by calling it with a token of each role. Every refusal is `{"code", "message"}` with a code',
    "from the README's error table; request bodies with unknown fields are refused (`REQUEST_INVALID`).",
    'The rules behind the roles are in [THREAT-MODEL.md](THREAT-MODEL.md) (R6, R7, R9).',
    '',
  ];
  const operations: { method: string; path: string; operation: Operation }[] = [];
  for (const [path, byMethod] of Object.entries(document.paths)) {
    for (const method of methods) {
      const operation = byMethod[method];
      if (operation !== undefined) operations.push({ method: method.toUpperCase(), path, operation });
    }
  }
  const tags = [...new Set(operations.map(({ operation }) => operation.tags?.[0] ?? 'other'))];
  out.push('| route | summary | who |', '|---|---|---|');
  for (const { method, path, operation } of operations) {
    const who = access.get(`${method} ${path}`);
    const short = who?.kind === 'roles' ? who.roles.join(', ') : who?.kind === 'certificate' ? 'client certificate' : 'anyone';
    out.push(`| [\`${method} ${path}\`](#${anchor(method, path)}) | ${cell(operation.summary ?? '')} | ${short} |`);
  }
  out.push('');
  for (const tag of tags) {
    out.push(`## ${tag}`, '');
    for (const { method, path, operation } of operations.filter(({ operation: o }) => (o.tags?.[0] ?? 'other') === tag)) {
      out.push(`### \`${method} ${path}\``, '');
      if (operation.summary !== undefined) out.push(`${operation.summary}.`.replace(/\.\.$/, '.'), '');
      if (operation.description !== undefined) out.push(operation.description, '');
      out.push(`**Who:** ${describeAccess(access.get(`${method} ${path}`))}`, '');
      const parameters = operation.parameters ?? [];
      if (parameters.length > 0) {
        out.push('| parameter | in | type | required | notes |', '|---|---|---|---|---|');
        for (const p of parameters) out.push(`| \`${p.name}\` | ${p.in} | ${typeOf(p.schema)} | ${p.required === true ? 'yes' : 'no'} | ${cell([p.description, constraints(p.schema)].filter((x) => x !== undefined && x !== '').join('; '))} |`);
        out.push('');
      }
      for (const [contentType, { schema }] of Object.entries(operation.requestBody?.content ?? {})) {
        out.push(`**Request body** (\`${contentType}\`${operation.requestBody?.required === true ? ', required' : ''}):`, '');
        const fields = Object.entries(schema?.properties ?? {});
        if (fields.length === 0) {
          out.push(`${typeOf(schema)}`, '');
          continue;
        }
        out.push('| field | type | required | notes |', '|---|---|---|---|');
        for (const [name, field] of fields) out.push(`| \`${name}\` | ${typeOf(field)} | ${schema?.required?.includes(name) === true ? 'yes' : 'no'} | ${cell(constraints(field))} |`);
        out.push('');
      }
      out.push('| answer | body |', '|---|---|');
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const bodies = Object.entries(response.content ?? {}).map(([type, { schema }]) => `\`${type}\` ${shapeOf(schema)}`);
        const description = response.description === 'Default Response' ? undefined : response.description;
        out.push(`| ${status} | ${cell(bodies.join('; ') || (description ?? '—'))} |`);
      }
      out.push('');
    }
  }
  return out.join('\n');
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchor(method: string, path: string): string {
  return `${method} ${path}`.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-');
}
