import { type Static, type TSchema, Type } from 'typebox';
import { listLimit } from './constants.ts';
import { Answer, Nullable } from './json-schema.ts';

/** Operator routes take a bearer token (or an operator certificate, which OpenAPI cannot say). */
export const bearer = [{ bearer: [] as string[] }];

/** Every refusal: a code from the catalogue (core/errors.ts) and a message (README "Error codes"). */
export const Problem = Answer({ code: Type.String(), message: Type.String() });
export type Problem = Static<typeof Problem>;
export const problems = { '4xx': Problem, '5xx': Problem };

// Query values arrive as strings and the API does not coerce types, so numbers are digit strings here.
export const LimitParam = Type.String({ pattern: '^[0-9]{1,4}$', description: `${listLimit.min} to ${listLimit.max}, default ${listLimit.default}` });

/** One page of a list: pass `next` back as `after` for the following one. */
export const Page = <T extends TSchema>(items: T) => Answer({ items: Type.Array(items), next: Nullable(Type.String(), { description: 'pass as `after` for the next page' }) });
/** A list answered whole: the same `{items, next}` shape as a page, with `next` always null. */
export const List = <T extends TSchema>(items: T) => Answer({ items: Type.Array(items), next: Type.Null({ description: 'always null: the whole list is in this answer' }) });
/** The audit trail is a feed, not a list: older entries are read with `until`, newer ones with `afterId`. */
export const Feed = <T extends TSchema>(items: T) => Answer({ items: Type.Array(items) });

