import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PolicyAction, PolicyDocument, PolicyEffect, PolicySubject } from './policy.ts';
import { compilePolicy, parsePolicyDocument, policyActions } from './policy.ts';
import { filterCovers, filtersIntersect, isReservedTopic, topicMatches } from './topic.ts';

/**
 * Properties over a small alphabet, checked against every topic name of up to four levels over that alphabet.
 * Filters have at most four levels, so whenever two filters share a topic they share one in `topics`.
 */
const literalLevels = ['a', '', '$x', 'd1'] as const;
const variableLevels = ['${device.id}', '${device.attributes.site}', '${device.template}'] as const;
const maxDepth = 4;
const numRuns = 2000;

const topics: readonly string[] = (() => {
  const out: string[] = [];
  let layer: string[] = [''];
  for (let depth = 1; depth <= maxDepth; depth++) {
    layer = layer.flatMap((prefix) => literalLevels.map((level) => (depth === 1 ? level : `${prefix}/${level}`)));
    out.push(...layer);
  }
  return out;
})();

const matchCache = new Map<string, readonly string[]>();
/** Every topic of `topics` that `filter` matches (cached: the same filters come up again and again). */
function matchingTopics(filter: string): readonly string[] {
  let hit = matchCache.get(filter);
  if (hit === undefined) {
    hit = topics.filter((topic) => topicMatches(filter, topic));
    matchCache.set(filter, hit);
  }
  return hit;
}

function filterFrom(levelArb: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(fc.array(levelArb, { minLength: 1, maxLength: maxDepth }), fc.boolean())
    .map(([levels, multi]) => (multi ? [...levels.slice(0, -1), '#'] : levels).join('/'))
    .filter((filter) => filter.length > 0); // a lone empty level is the empty string, not a topic
}

const filterLevel = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...literalLevels) }, { weight: 2, arbitrary: fc.constant('+') });
const filterArb = filterFrom(filterLevel);
const patternArb = filterFrom(
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...literalLevels) },
    { weight: 2, arbitrary: fc.constant('+') },
    { weight: 2, arbitrary: fc.constantFrom(...variableLevels) },
  ),
);
const statementArb = fc.record(
  {
    sid: fc.constantFrom('s1', 's2'),
    effect: fc.constantFrom<PolicyEffect>('allow', 'allow', 'deny'),
    actions: fc.subarray([...policyActions], { minLength: 1 }),
    topics: fc.array(patternArb, { minLength: 1, maxLength: 3 }),
  },
  { requiredKeys: ['effect', 'actions', 'topics'] },
);
const documentArb: fc.Arbitrary<PolicyDocument> = fc.record({ statements: fc.array(statementArb, { minLength: 1, maxLength: 4 }) });
const subjectArb: fc.Arbitrary<PolicySubject> = fc.record({
  id: fc.constantFrom('a', 'd1'),
  template: fc.constantFrom('a', 'd1'),
  attributes: fc.constantFrom<Record<string, string>>({}, { site: 'a' }, { site: 'd1' }, { site: '$x' }, { other: 'a' }),
});

describe('policy decisions on filters agree with the decisions on the topics they match', () => {
  it('every generated document is valid', () => {
    fc.assert(
      fc.property(documentArb, (document) => {
        expect(parsePolicyDocument(JSON.parse(JSON.stringify(document)))).toEqual(document);
      }),
      { numRuns: 500 },
    );
  });

  it('an allowed subscription never matches a topic outside the policy; a filter is denied exactly when it matches a denied topic', () => {
    let allowed = 0;
    let denied = 0;
    fc.assert(
      fc.property(documentArb, subjectArb, filterArb, (document, subject, filter) => {
        const policy = compilePolicy(document, subject);
        const decision = policy.decide('subscribe', filter);
        const matched = matchingTopics(filter);
        const effectOf = (topic: string) => policy.decide('subscribe', topic).effect;
        if (decision.effect === 'deny') {
          denied++;
          const deniedTopic = matched.find((topic) => effectOf(topic) === 'deny');
          // Known conservative answer: "/#" and "+" share only the empty string, which is no topic (see report).
          if (deniedTopic === undefined) expect([decision.pattern, filter].sort(), `${filter} denied by ${decision.pattern}`).toEqual(['+', '/#']);
        } else if (decision.effect === 'allow') {
          allowed++;
          const leak = matched.find((topic) => effectOf(topic) !== 'allow');
          expect(leak, `${filter} is allowed but matches ${leak}, which is not`).toBeUndefined();
        } else {
          const deniedTopic = matched.find((topic) => effectOf(topic) === 'deny');
          expect(deniedTopic, `${filter} is not denied but matches denied ${deniedTopic}`).toBeUndefined();
        }
      }),
      { numRuns },
    );
    // The generators must actually reach both branches.
    expect(allowed).toBeGreaterThan(numRuns / 50);
    expect(denied).toBeGreaterThan(numRuns / 50);
  });

  it('deny wins: the decision composes from the decisions of the single statements, and names the first deciding one', () => {
    const targetArb = fc.oneof(filterArb, fc.constantFrom(...topics));
    fc.assert(
      fc.property(documentArb, subjectArb, targetArb, fc.constantFrom<PolicyAction>(...policyActions), (document, subject, target, action) => {
        // A filter only makes sense for subscribe; topic names are valid filters, so any action may take them.
        if (action !== 'subscribe' && /[+#]/.test(target)) return;
        const single = document.statements.map((statement) => compilePolicy({ statements: [statement] }, subject).decide(action, target));
        const firstDeny = single.findIndex((decision) => decision.effect === 'deny');
        const firstAllow = single.findIndex((decision) => decision.effect === 'allow');
        const expected = firstDeny >= 0 ? { index: firstDeny, effect: 'deny' } : firstAllow >= 0 ? { index: firstAllow, effect: 'allow' } : undefined;
        const decision = compilePolicy(document, subject).decide(action, target);
        if (expected === undefined) {
          expect(decision).toEqual({ effect: 'no-match' });
          return;
        }
        const statement = document.statements[expected.index];
        expect(decision).toEqual({
          effect: expected.effect,
          statementIndex: expected.index,
          pattern: single[expected.index]?.pattern,
          ...(statement?.sid === undefined ? {} : { sid: statement.sid }),
        });
      }),
      { numRuns },
    );
  });

  it('a missing attribute never allows more than a present one (on non-"$" topics)', () => {
    fc.assert(
      fc.property(documentArb, fc.constantFrom('a', 'd1', '$x'), filterArb, (document, value, filter) => {
        const base = { id: 'd1', template: 'a' };
        const missing = compilePolicy(document, { ...base, attributes: {} });
        const present = compilePolicy(document, { ...base, attributes: { site: value } });
        // "$" filters are left out: a missing value widens to "+", which never reaches a first level "$x" that a
        // present value could name (see report); session-scope keeps devices off "$" topics before any policy.
        if (isReservedTopic(filter)) return;
        if (missing.decide('subscribe', filter).effect === 'allow') expect(present.decide('subscribe', filter).effect).toBe('allow');
      }),
      { numRuns },
    );
  });
});

describe('filter set relations agree with topicMatches', () => {
  it('filterCovers(a, b) and b matches t ⇒ a matches t', () => {
    let covered = 0;
    fc.assert(
      fc.property(filterArb, filterArb, (a, b) => {
        if (!filterCovers(a, b)) return;
        covered++;
        const missed = matchingTopics(b).find((topic) => !topicMatches(a, topic));
        expect(missed, `${a} ⊇ ${b} but misses ${missed}`).toBeUndefined();
      }),
      { numRuns },
    );
    expect(covered).toBeGreaterThan(numRuns / 50);
  });

  it('a and b both match t ⇔ filtersIntersect(a, b) (with a witness among the enumerated topics)', () => {
    fc.assert(
      fc.property(filterArb, filterArb, (a, b) => {
        const inB = new Set(matchingTopics(b));
        const witness = matchingTopics(a).find((topic) => inB.has(topic));
        // Known conservative answer: "/#" and "+" share only the empty string, which is no topic (see report).
        if (witness === undefined && [a, b].includes('/#') && [a, b].includes('+')) return;
        expect(filtersIntersect(a, b), `${a} ∩ ${b}, witness ${witness}`).toBe(witness !== undefined);
        expect(filtersIntersect(b, a)).toBe(filtersIntersect(a, b));
      }),
      { numRuns },
    );
  });

  it('on a topic name, filterCovers and filtersIntersect reduce to topicMatches', () => {
    fc.assert(
      fc.property(filterArb, fc.constantFrom(...topics), (filter, topic) => {
        const matches = topicMatches(filter, topic);
        expect(filterCovers(filter, topic)).toBe(matches);
        expect(filtersIntersect(filter, topic)).toBe(matches);
      }),
      { numRuns },
    );
  });

  it('filterCovers is exact on the enumerated topics, except that "#" ⊆ "+/#" is not recognised', () => {
    fc.assert(
      fc.property(filterArb, filterArb, (a, b) => {
        const inA = new Set(matchingTopics(a));
        const subset = matchingTopics(b).every((topic) => inA.has(topic));
        if (b === '#' && a === '+/#') return; // same topic set; refusing is conservative (see report)
        // A filter ending in "#" matches topics deeper than the enumeration; only the sound direction is exact there.
        if (subset && !filterCovers(a, b) && b.endsWith('#')) return;
        expect(filterCovers(a, b), `${a} ⊇ ${b}`).toBe(subset);
      }),
      { numRuns },
    );
  });
});
