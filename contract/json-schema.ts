import { type Static, type TObject, type TProperties, type TSchema, type TUnsafe, Type } from 'typebox';

/**
 * TypeBox builders that emit the JSON Schema this API has always published (docs/api-reference.md, its
 * OpenAPI document, the answers of fastify's ajv), where TypeBox's own builders would write another but
 * equivalent schema: `{type: [T, 'null']}` rather than `anyOf`, `{type: 'string', enum}` rather than a
 * union of `const`s, `additionalProperties` rather than `patternProperties`.
 */

type SchemaOptions = Readonly<Record<string, unknown>>;

/** `T | null`, written `{type: [T, 'null']}`. */
export const Nullable = <T extends TSchema>(schema: T, options: SchemaOptions = {}): TUnsafe<Static<T> | null> =>
  Type.Unsafe<Static<T> | null>({ ...schema, type: [(schema as { type?: string }).type, 'null'], ...options });

/** One of these strings. */
export const StringEnum = <const T extends readonly string[]>(values: T, options: SchemaOptions = {}): TUnsafe<T[number]> =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });

/** Names to strings (attributes). */
export const StringMap = (options: SchemaOptions = {}): TUnsafe<Record<string, string>> =>
  Type.Unsafe<Record<string, string>>({ type: 'object', additionalProperties: { type: 'string' }, ...options });

/**
 * An object the API answers with. Its properties are typed as always present (optional ones say so with
 * `Type.Optional`), so a handler that leaves one out or a client that reads a renamed one fails to compile,
 * but the schema lists no `required`: the answers' schemas never have, and fast-json-stringify would turn
 * a missing property into a 500 rather than leave it out.
 */
export function Answer<T extends TProperties>(properties: T, options: SchemaOptions = {}): TObject<T> {
  const schema = Type.Object(properties, options);
  Reflect.deleteProperty(schema, 'required');
  return schema;
}

/** A list the client reads but never changes in place: typed `readonly T[]` (TypeBox Immutable), same schema. */
export const ImmutableArray = <T extends TSchema>(items: T, options: SchemaOptions = {}) => Type.Immutable(Type.Array(items, options));

export const DateTime = (options: SchemaOptions = {}) => Type.String({ format: 'date-time', ...options });
