/**
 * The HTTPS API's contract: every route's parameters, bodies and answers as TypeBox schemas, which the
 * routes register (fastify validates with them and takes its handler types from them through
 * @fastify/type-provider-typebox), the OpenAPI document publishes (docs/api-reference.md), and the CLI and
 * the web console read their types from (`Static<typeof X>`, exported here under the schema's name).
 */
export * from './constants.ts';
export * from './common.ts';
export * from './fleet.ts';
export * from './admin.ts';
export * from './security.ts';
export * from './enrollment.ts';
export * from './checks.ts';
export * from './pki.ts';
export * from './rotation.ts';
