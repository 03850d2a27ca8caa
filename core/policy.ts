import type { DeviceAttributes } from './device-id.ts';
import { FleetgateError } from './errors.ts';
import { filterCovers, filtersIntersect, isValidTopicFilter } from './topic.ts';

/**
 * Topic ACL policies: statements {effect, actions, topics} with variables, evaluated deny-first.
 * A decision always names the statement that made it, so `policy explain` and audit entries can say why.
 */
export const policyActions = ['publish', 'subscribe', 'receive'] as const;
export type PolicyAction = (typeof policyActions)[number];
export type PolicyEffect = 'allow' | 'deny';

export interface PolicyStatement {
  readonly sid?: string;
  readonly effect: PolicyEffect;
  readonly actions: readonly PolicyAction[];
  readonly topics: readonly string[];
}

export interface PolicyDocument {
  readonly statements: readonly PolicyStatement[];
}

/** Who the variables are resolved for. */
export interface PolicySubject {
  readonly id: string;
  readonly template: string;
  readonly attributes: DeviceAttributes;
}

export interface Decision {
  readonly effect: PolicyEffect | 'no-match';
  /** Index of the deciding statement in the document; absent for no-match. */
  readonly statementIndex?: number;
  readonly sid?: string;
  /** The statement's topic filter after variable substitution. */
  readonly pattern?: string;
}

export const defaultDevicePolicyName = 'default';
export const backendPolicyName = 'backend';

export const defaultDevicePolicy: PolicyDocument = {
  statements: [{ sid: 'own-topics', effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] }],
};

export const backendPolicy: PolicyDocument = {
  statements: [{ sid: 'all-devices', effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/#'] }],
};

const variablePattern = /\$\{([^}]*)\}/g;
const knownVariable = /^device\.(id|template|attributes\.[A-Za-z_][A-Za-z0-9_]{0,63})$/;
const statementKeys = new Set(['sid', 'effect', 'actions', 'topics']);
const maxStatements = 256;
const maxTopicsPerStatement = 64;

function invalid(reason: string): FleetgateError {
  return new FleetgateError('POLICY_INVALID', { message: `The policy document is not valid: ${reason}.`, detail: { reason } });
}

/** Validates an untrusted policy document (from the API or a file). Unknown fields are refused. */
export function parsePolicyDocument(value: unknown): PolicyDocument {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('expected an object {"statements": [...]}');
  const extra = Object.keys(value).filter((key) => key !== 'statements');
  if (extra.length > 0) throw invalid(`unknown field "${extra[0]}"`);
  const statements = (value as { statements?: unknown }).statements;
  if (!Array.isArray(statements) || statements.length === 0) throw invalid('"statements" must be a non-empty array');
  if (statements.length > maxStatements) throw invalid(`at most ${maxStatements} statements`);
  return { statements: statements.map((statement, index) => parseStatement(statement, index)) };
}

function parseStatement(value: unknown, index: number): PolicyStatement {
  const where = `statement ${index}`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${where} must be an object`);
  const record = value as Record<string, unknown>;
  const extra = Object.keys(record).find((key) => !statementKeys.has(key));
  if (extra !== undefined) throw invalid(`${where} has unknown field "${extra}"`);
  const { sid, effect, actions, topics } = record;
  if (sid !== undefined && (typeof sid !== 'string' || sid.length === 0 || sid.length > 128)) throw invalid(`${where}: "sid" must be a short string`);
  if (effect !== 'allow' && effect !== 'deny') throw invalid(`${where}: "effect" must be "allow" or "deny"`);
  if (!Array.isArray(actions) || actions.length === 0 || !actions.every((a) => (policyActions as readonly unknown[]).includes(a))) {
    throw invalid(`${where}: "actions" must list publish, subscribe and/or receive`);
  }
  if (!Array.isArray(topics) || topics.length === 0 || topics.length > maxTopicsPerStatement) {
    throw invalid(`${where}: "topics" must be a non-empty array of at most ${maxTopicsPerStatement} filters`);
  }
  for (const topic of topics) {
    if (typeof topic !== 'string') throw invalid(`${where}: topics must be strings`);
    for (const [, name] of topic.matchAll(variablePattern)) {
      if (!knownVariable.test(name ?? '')) throw invalid(`${where}: unknown variable "\${${name}}"`);
    }
    if (topic.replace(variablePattern, 'x').includes('${')) throw invalid(`${where}: unterminated variable in "${topic.slice(0, 200)}"`);
    // Variables always expand to one safe level fragment, so validate with a stand-in value.
    if (!isValidTopicFilter(topic.replace(variablePattern, 'x'))) throw invalid(`${where}: "${topic.slice(0, 200)}" is not a valid topic filter`);
  }
  return {
    ...(sid === undefined ? {} : { sid: sid as string }),
    effect,
    actions: [...new Set(actions as PolicyAction[])],
    topics: [...(topics as string[])],
  };
}

interface CompiledRule {
  readonly effect: PolicyEffect;
  readonly statementIndex: number;
  readonly sid: string | undefined;
  readonly pattern: string;
}

/** A policy with its variables resolved for one subject; built once per session, queried per packet. */
export interface CompiledPolicy {
  /**
   * `topic` is a topic name for publish/receive and a topic filter for subscribe. It is not validated
   * here: callers go through session-scope's decideInScope, which refuses invalid topics first.
   */
  decide(action: PolicyAction, topic: string): Decision;
}

const noMatch: Decision = Object.freeze({ effect: 'no-match' });

/** Decisions remembered per compiled policy and action. */
const decisionCacheSize = 1024;

export function compilePolicy(document: PolicyDocument, subject: PolicySubject): CompiledPolicy {
  const rules: Record<PolicyAction, { deny: CompiledRule[]; allow: CompiledRule[] }> = {
    publish: { deny: [], allow: [] },
    subscribe: { deny: [], allow: [] },
    receive: { deny: [], allow: [] },
  };
  document.statements.forEach((statement, statementIndex) => {
    for (const topic of statement.topics) {
      const pattern = substitute(topic, subject, statement.effect);
      if (pattern === undefined) continue;
      for (const action of statement.actions) {
        rules[action][statement.effect].push({ effect: statement.effect, statementIndex, sid: statement.sid, pattern });
      }
    }
  });

  const evaluate = (action: PolicyAction, topic: string): Decision => {
    const { deny, allow } = rules[action];
    // Deny wins. For a filter, a deny rule applies if it could match any topic the filter matches;
    // an allow rule applies only if it matches every one of them. For a topic name both reduce to matching.
    for (const rule of deny) if (filtersIntersect(rule.pattern, topic)) return toDecision(rule);
    for (const rule of allow) if (filterCovers(rule.pattern, topic)) return toDecision(rule);
    return noMatch;
  };
  // The broker asks on every publish and every delivery, mostly about the same few topics: remember the
  // answers (a compiled policy never changes; a changed policy is compiled anew). Bounded: a session that
  // touches ever new topics only ever holds the last `decisionCacheSize` of them per action. Each Map is made
  // by the first decision of its action: a policy is compiled on every CONNECT, and a session that connects
  // and leaves (or only publishes) never asks most actions anything.
  const cache: Record<PolicyAction, Map<string, Decision> | undefined> = { publish: undefined, subscribe: undefined, receive: undefined };
  return {
    decide(action, topic) {
      const remembered = cache[action]?.get(topic);
      if (remembered !== undefined) return remembered;
      const decision = evaluate(action, topic);
      const entries = (cache[action] ??= new Map());
      if (entries.size >= decisionCacheSize) entries.delete(entries.keys().next().value as string);
      entries.set(topic, decision);
      return decision;
    },
  };
}

function toDecision(rule: CompiledRule): Decision {
  // Frozen: the same object is handed out again from the cache.
  return Object.freeze({ effect: rule.effect, statementIndex: rule.statementIndex, pattern: rule.pattern, ...(rule.sid === undefined ? {} : { sid: rule.sid }) });
}

/** A value that is safe to place inside one topic level. */
function isSafeLevelValue(value: string | undefined): value is string {
  // A leading "$" would make a first level reserved, which the "+" a deny widens to could never reach.
  return value !== undefined && value.length > 0 && !/[/+#\u0000]/.test(value) && !value.startsWith('$');
}

/**
 * Replaces variables. When a value is missing or unsafe, an allow pattern is dropped (grants nothing) and
 * the levels of a deny pattern that hold it widen to "+" (denies more, never less): fail closed both ways.
 */
function substitute(topic: string, subject: PolicySubject, effect: PolicyEffect): string | undefined {
  if (!topic.includes('${')) return topic;
  const levels = topic.split('/').map((level) => {
    let unresolved = false;
    const replaced = level.replace(variablePattern, (_, name: string) => {
      const value = resolve(name, subject);
      if (!isSafeLevelValue(value)) unresolved = true;
      return value ?? '';
    });
    return unresolved ? undefined : replaced;
  });
  if (levels.includes(undefined)) {
    if (effect === 'allow') return undefined;
    return levels.map((level) => level ?? '+').join('/');
  }
  return levels.join('/');
}

function resolve(name: string, subject: PolicySubject): string | undefined {
  if (name === 'device.id') return subject.id;
  if (name === 'device.template') return subject.template;
  if (name.startsWith('device.attributes.')) {
    const key = name.slice('device.attributes.'.length);
    return Object.hasOwn(subject.attributes, key) ? subject.attributes[key] : undefined;
  }
  return undefined;
}
