import { describe, expect, it } from 'vitest';
import type { PolicyAction, PolicyDocument, PolicySubject } from './policy.ts';
import { backendPolicy, compilePolicy, defaultDevicePolicy, parsePolicyDocument, policyActions } from './policy.ts';

const d1: PolicySubject = { id: 'd1', template: 'thermostat', attributes: { site: 'plant-7', zone: 'north' } };

function statement(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { effect: 'allow', actions: ['publish'], topics: ['devices/${device.id}/#'], ...overrides };
}

describe('parsePolicyDocument', () => {
  it('accepts a valid document and keeps only what it knows', () => {
    const document = parsePolicyDocument({
      statements: [
        { sid: 'own', effect: 'allow', actions: ['publish', 'subscribe', 'publish'], topics: ['devices/${device.id}/#'] },
        { effect: 'deny', actions: ['receive'], topics: ['devices/${device.attributes.site}/secret', 'fleet/${device.template}/+'] },
      ],
    });
    expect(document).toEqual({
      statements: [
        { sid: 'own', effect: 'allow', actions: ['publish', 'subscribe'], topics: ['devices/${device.id}/#'] },
        { effect: 'deny', actions: ['receive'], topics: ['devices/${device.attributes.site}/secret', 'fleet/${device.template}/+'] },
      ],
    });
    expect(document.statements[1]).not.toHaveProperty('sid');
  });

  it('accepts the built-in policies', () => {
    expect(parsePolicyDocument(JSON.parse(JSON.stringify(defaultDevicePolicy)))).toEqual(defaultDevicePolicy);
    expect(parsePolicyDocument(JSON.parse(JSON.stringify(backendPolicy)))).toEqual(backendPolicy);
  });

  it.each<[string, unknown]>([
    ['null', null],
    ['a string', 'statements'],
    ['an array', [statement()]],
    ['no statements', {}],
    ['empty statements', { statements: [] }],
    ['statements not an array', { statements: statement() }],
    ['unknown top-level field', { statements: [statement()], version: '2012-10-17' }],
    ['JSON __proto__ field', JSON.parse('{"statements": [{"effect":"allow","actions":["publish"],"topics":["a"]}], "__proto__": {"x": 1}}')],
    ['too many statements', { statements: Array.from({ length: 257 }, () => statement()) }],
    ['statement not an object', { statements: ['allow'] }],
    ['statement null', { statements: [null] }],
    ['statement an array', { statements: [[]] }],
    ['unknown statement field', { statements: [statement({ condition: {} })] }],
    ['"Effect" capitalised', { statements: [{ Effect: 'allow', actions: ['publish'], topics: ['a'] }] }],
    ['empty sid', { statements: [statement({ sid: '' })] }],
    ['numeric sid', { statements: [statement({ sid: 7 })] }],
    ['long sid', { statements: [statement({ sid: 'x'.repeat(129) })] }],
    ['missing effect', { statements: [{ actions: ['publish'], topics: ['a'] }] }],
    ['effect "Allow"', { statements: [statement({ effect: 'Allow' })] }],
    ['effect "permit"', { statements: [statement({ effect: 'permit' })] }],
    ['effect true', { statements: [statement({ effect: true })] }],
    ['missing actions', { statements: [{ effect: 'allow', topics: ['a'] }] }],
    ['empty actions', { statements: [statement({ actions: [] })] }],
    ['action "connect"', { statements: [statement({ actions: ['connect'] })] }],
    ['action "*"', { statements: [statement({ actions: ['*'] })] }],
    ['action "Publish"', { statements: [statement({ actions: ['Publish'] })] }],
    ['actions a string', { statements: [statement({ actions: 'publish' })] }],
    ['missing topics', { statements: [{ effect: 'allow', actions: ['publish'] }] }],
    ['empty topics', { statements: [statement({ topics: [] })] }],
    ['topics a string', { statements: [statement({ topics: 'a/#' })] }],
    ['topic not a string', { statements: [statement({ topics: [42] })] }],
    ['too many topics', { statements: [statement({ topics: Array.from({ length: 65 }, (_, i) => `t/${i}`) })] }],
    ['empty topic', { statements: [statement({ topics: [''] })] }],
    ['"#" not last', { statements: [statement({ topics: ['#/a'] })] }],
    ['"#" inside a level', { statements: [statement({ topics: ['a/b#'] })] }],
    ['"+" inside a level', { statements: [statement({ topics: ['a/+b'] })] }],
    ['NUL', { statements: [statement({ topics: ['a\u0000'] })] }],
    ['variable glued to "#"', { statements: [statement({ topics: ['devices/${device.id}#'] })] }],
    ['variable glued to "+"', { statements: [statement({ topics: ['devices/+${device.id}'] })] }],
    ['"#" after a variable level', { statements: [statement({ topics: ['devices/${device.id}/#/x'] })] }],
    ['unknown variable', { statements: [statement({ topics: ['devices/${device.name}/#'] })] }],
    ['unknown root', { statements: [statement({ topics: ['devices/${client.id}/#'] })] }],
    ['empty variable', { statements: [statement({ topics: ['devices/${}/#'] })] }],
    ['attribute without a name', { statements: [statement({ topics: ['devices/${device.attributes.}/#'] })] }],
    ['attribute with a bad name', { statements: [statement({ topics: ['devices/${device.attributes.a-b}/#'] })] }],
    ['variable with a different case', { statements: [statement({ topics: ['devices/${Device.Id}/#'] })] }],
    ['variable with spaces', { statements: [statement({ topics: ['devices/${ device.id }/#'] })] }],
    ['the second statement is bad', { statements: [statement(), statement({ effect: 'maybe' })] }],
  ])('refuses %s with POLICY_INVALID', (_, value) => {
    expect(() => parsePolicyDocument(value)).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }));
  });

  it('says which statement is wrong', () => {
    expect(() => parsePolicyDocument({ statements: [statement(), statement({ topics: ['a/#/b'] })] })).toThrow(/statement 1/);
  });
});

describe('compilePolicy: the default device policy', () => {
  const policy = compilePolicy(defaultDevicePolicy, d1);

  it.each<[PolicyAction, string, 'allow' | 'no-match']>([
    ['publish', 'devices/d1/telemetry', 'allow'],
    ['publish', 'devices/d1/a/b/c', 'allow'],
    ['publish', 'devices/d1', 'allow'], // "devices/d1/#" matches its parent [MQTT-4.7.1-2]
    ['publish', 'devices/d1/', 'allow'],
    ['publish', 'devices/d2/telemetry', 'no-match'],
    ['publish', 'devices/d10/telemetry', 'no-match'],
    ['publish', 'devices/d/telemetry', 'no-match'],
    ['publish', 'devices', 'no-match'],
    ['publish', 'Devices/d1/x', 'no-match'],
    ['publish', '/devices/d1/x', 'no-match'],
    ['publish', 'other/d1', 'no-match'],
    ['receive', 'devices/d1/commands', 'allow'],
    ['receive', 'devices/d2/commands', 'no-match'],
    ['subscribe', 'devices/d1/#', 'allow'],
    ['subscribe', 'devices/d1/commands', 'allow'],
    ['subscribe', 'devices/d1/+', 'allow'],
    ['subscribe', 'devices/d1/+/#', 'allow'],
    ['subscribe', 'devices/d1', 'allow'],
    ['subscribe', '#', 'no-match'],
    ['subscribe', '+', 'no-match'],
    ['subscribe', '+/#', 'no-match'],
    ['subscribe', 'devices/#', 'no-match'],
    ['subscribe', 'devices/+', 'no-match'],
    ['subscribe', 'devices/+/x', 'no-match'],
    ['subscribe', 'devices/+/#', 'no-match'],
    ['subscribe', '+/d1/#', 'no-match'],
    ['subscribe', 'devices/d2/#', 'no-match'],
    ['subscribe', 'devices/d2/commands', 'no-match'],
  ])('%s %j → %s', (action, topic, effect) => {
    const decision = policy.decide(action, topic);
    expect(decision.effect).toBe(effect);
    if (effect === 'allow') expect(decision).toEqual({ effect: 'allow', statementIndex: 0, sid: 'own-topics', pattern: 'devices/d1/#' });
    else expect(decision).toEqual({ effect: 'no-match' });
  });

  it('the backend policy reaches every device topic and nothing else', () => {
    const backend = compilePolicy(backendPolicy, { id: 'analytics', template: 'service', attributes: {} });
    for (const action of policyActions) {
      expect(backend.decide(action, action === 'subscribe' ? 'devices/#' : 'devices/d1/x').effect).toBe('allow');
      expect(backend.decide(action, action === 'subscribe' ? '#' : 'other/x').effect).toBe('no-match');
    }
    expect(backend.decide('subscribe', 'devices/+/telemetry').effect).toBe('allow');
    expect(backend.decide('subscribe', '+/d1/x').effect).toBe('no-match');
  });
});

describe('compilePolicy: deny wins and the decision says why', () => {
  const document: PolicyDocument = {
    statements: [
      { sid: 'own', effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] },
      { sid: 'no-secrets', effect: 'deny', actions: ['publish', 'subscribe'], topics: ['devices/+/secret', 'devices/${device.id}/secret/#'] },
      { effect: 'allow', actions: ['subscribe'], topics: ['broadcast/#'] },
      { effect: 'deny', actions: ['receive'], topics: ['devices/${device.id}/muted'] },
    ],
  };
  const policy = compilePolicy(document, d1);

  it.each<[PolicyAction, string, object]>([
    ['publish', 'devices/d1/secret', { effect: 'deny', statementIndex: 1, sid: 'no-secrets', pattern: 'devices/+/secret' }],
    ['publish', 'devices/d1/secret/x', { effect: 'deny', statementIndex: 1, sid: 'no-secrets', pattern: 'devices/d1/secret/#' }],
    ['publish', 'devices/d1/telemetry', { effect: 'allow', statementIndex: 0, sid: 'own', pattern: 'devices/d1/#' }],
    // A filter is denied if it could match any denied topic.
    ['subscribe', 'devices/d1/#', { effect: 'deny', statementIndex: 1, sid: 'no-secrets', pattern: 'devices/+/secret' }],
    ['subscribe', 'devices/d1/+', { effect: 'deny', statementIndex: 1, sid: 'no-secrets', pattern: 'devices/+/secret' }],
    ['subscribe', 'devices/d1/secret/#', { effect: 'deny', statementIndex: 1, sid: 'no-secrets', pattern: 'devices/+/secret' }],
    ['subscribe', 'devices/d1/+/x', { effect: 'deny', statementIndex: 1, sid: 'no-secrets', pattern: 'devices/d1/secret/#' }],
    ['subscribe', 'devices/d1/telemetry/#', { effect: 'allow', statementIndex: 0, sid: 'own', pattern: 'devices/d1/#' }],
    ['subscribe', 'broadcast/+', { effect: 'allow', statementIndex: 2, pattern: 'broadcast/#' }],
    ['publish', 'broadcast/x', { effect: 'no-match' }],
    // The receive deny has no sid: the decision has none either.
    ['receive', 'devices/d1/muted', { effect: 'deny', statementIndex: 3, pattern: 'devices/d1/muted' }],
    ['receive', 'devices/d1/secret', { effect: 'allow', statementIndex: 0, sid: 'own', pattern: 'devices/d1/#' }],
  ])('%s %j', (action, topic, decision) => {
    expect(policy.decide(action, topic)).toEqual(decision);
  });

  it('a deny statement earlier or later in the document wins alike', () => {
    const denyFirst = compilePolicy(
      {
        statements: [
          { effect: 'deny', actions: ['publish'], topics: ['#'] },
          { effect: 'allow', actions: ['publish'], topics: ['#'] },
        ],
      },
      d1,
    );
    const denyLast = compilePolicy(
      {
        statements: [
          { effect: 'allow', actions: ['publish'], topics: ['#'] },
          { effect: 'deny', actions: ['publish'], topics: ['#'] },
        ],
      },
      d1,
    );
    expect(denyFirst.decide('publish', 'a')).toEqual({ effect: 'deny', statementIndex: 0, pattern: '#' });
    expect(denyLast.decide('publish', 'a')).toEqual({ effect: 'deny', statementIndex: 1, pattern: '#' });
  });

  it('actions are independent', () => {
    const publishOnly = compilePolicy({ statements: [{ effect: 'allow', actions: ['publish'], topics: ['a/#'] }] }, d1);
    expect(publishOnly.decide('publish', 'a/b').effect).toBe('allow');
    expect(publishOnly.decide('subscribe', 'a/b').effect).toBe('no-match');
    expect(publishOnly.decide('receive', 'a/b').effect).toBe('no-match');
  });
});

describe('compilePolicy: variables', () => {
  const document: PolicyDocument = {
    statements: [
      { sid: 'site', effect: 'allow', actions: ['publish', 'subscribe'], topics: ['sites/${device.attributes.site}/${device.id}/#'] },
      { sid: 'template', effect: 'allow', actions: ['subscribe'], topics: ['firmware/${device.template}/+'] },
      { sid: 'joined', effect: 'allow', actions: ['publish'], topics: ['t/${device.template}-${device.id}'] },
      { sid: 'zone-block', effect: 'deny', actions: ['publish'], topics: ['sites/+/${device.id}/zones/${device.attributes.blocked}'] },
    ],
  };

  it('substitutes id, template and attributes', () => {
    const policy = compilePolicy(document, { ...d1, attributes: { site: 'plant-7', blocked: 'south' } });
    expect(policy.decide('publish', 'sites/plant-7/d1/x')).toMatchObject({ effect: 'allow', sid: 'site', pattern: 'sites/plant-7/d1/#' });
    expect(policy.decide('publish', 'sites/plant-8/d1/x').effect).toBe('no-match');
    expect(policy.decide('subscribe', 'firmware/thermostat/+')).toMatchObject({ effect: 'allow', pattern: 'firmware/thermostat/+' });
    expect(policy.decide('subscribe', 'firmware/+/+').effect).toBe('no-match');
    expect(policy.decide('publish', 't/thermostat-d1')).toMatchObject({ effect: 'allow', pattern: 't/thermostat-d1' });
    expect(policy.decide('publish', 'sites/plant-7/d1/zones/south')).toMatchObject({ effect: 'deny', pattern: 'sites/+/d1/zones/south' });
    expect(policy.decide('publish', 'sites/plant-7/d1/zones/north').effect).toBe('allow');
  });

  it('drops an allow pattern whose attribute is missing (grants nothing)', () => {
    const policy = compilePolicy(document, { ...d1, attributes: {} });
    expect(policy.decide('publish', 'sites/plant-7/d1/x').effect).toBe('no-match');
    expect(policy.decide('publish', 'sites//d1/x').effect).toBe('no-match'); // not "sites//d1/#"
    expect(policy.decide('publish', 'sites/undefined/d1/x').effect).toBe('no-match');
    // The other patterns of the document still apply.
    expect(policy.decide('subscribe', 'firmware/thermostat/+').effect).toBe('allow');
  });

  it('widens the levels of a deny pattern whose attribute is missing to "+" (fails closed)', () => {
    const policy = compilePolicy(document, { ...d1, attributes: { site: 'plant-7' } });
    expect(policy.decide('publish', 'sites/plant-7/d1/zones/anything')).toEqual({
      effect: 'deny',
      statementIndex: 3,
      sid: 'zone-block',
      pattern: 'sites/+/d1/zones/+',
    });
    expect(policy.decide('subscribe', 'sites/plant-7/d1/#').effect).toBe('allow'); // deny is publish only
    expect(policy.decide('publish', 'sites/plant-7/d1/other').effect).toBe('allow');
  });

  it('a level mixing text and a missing variable widens as a whole', () => {
    const policy = compilePolicy(
      {
        statements: [
          { effect: 'allow', actions: ['publish'], topics: ['a/#'] },
          { effect: 'deny', actions: ['publish'], topics: ['a/pre-${device.attributes.x}-post/c'] },
        ],
      },
      d1,
    );
    expect(policy.decide('publish', 'a/anything/c')).toMatchObject({ effect: 'deny', pattern: 'a/+/c' });
    expect(policy.decide('publish', 'a/anything/d').effect).toBe('allow');
  });

  it.each(['', 'a/b', '+', '#', 'x\u0000'])('treats an unsafe value %j as missing', (value) => {
    const subject: PolicySubject = { id: value, template: value, attributes: { site: value } };
    const policy = compilePolicy(
      {
        statements: [
          { effect: 'allow', actions: ['publish', 'subscribe'], topics: ['devices/${device.id}/#', 'sites/${device.attributes.site}/#', 'tpl/${device.template}'] },
          { effect: 'deny', actions: ['receive'], topics: ['devices/${device.id}/x'] },
          { effect: 'allow', actions: ['receive'], topics: ['#'] },
        ],
      },
      subject,
    );
    // No allow pattern survives, so even the most literal subscription is refused...
    for (const filter of ['#', 'devices/#', 'devices/+/#', 'sites/#', 'tpl/+', 'devices/a/b/#']) expect(policy.decide('subscribe', filter).effect).toBe('no-match');
    // ...and the deny pattern widened to "devices/+/x".
    expect(policy.decide('receive', 'devices/anyone/x')).toMatchObject({ effect: 'deny', pattern: 'devices/+/x' });
    expect(policy.decide('receive', 'devices/anyone/y').effect).toBe('allow');
  });

  it('does not read inherited properties as attributes', () => {
    const policy = compilePolicy(
      { statements: [{ effect: 'allow', actions: ['publish'], topics: ['a/${device.attributes.toString}', 'b/${device.attributes.constructor}'] }] },
      { ...d1, attributes: {} },
    );
    expect(policy.decide('publish', 'a/function toString() { [native code] }').effect).toBe('no-match');
    expect(policy.decide('publish', 'b/function Object() { [native code] }').effect).toBe('no-match');
  });

  it('does not re-expand a value that looks like a variable', () => {
    const policy = compilePolicy(
      { statements: [{ effect: 'allow', actions: ['publish'], topics: ['a/${device.attributes.v}/${device.id}'] }] },
      { ...d1, attributes: { v: 'v${device.id}' } },
    );
    expect(policy.decide('publish', 'a/v${device.id}/d1').effect).toBe('allow');
    expect(policy.decide('publish', 'a/vd1/d1').effect).toBe('no-match');
  });
});

describe('compilePolicy: subscriptions are checked as sets, not strings', () => {
  // A filter is allowed only if ONE allow pattern covers it and NO deny pattern intersects it.
  const split = compilePolicy(
    {
      statements: [
        { effect: 'allow', actions: ['subscribe'], topics: ['a/x/#', 'a/y/#', 'b/+/c'] },
        { effect: 'deny', actions: ['subscribe'], topics: ['b/secret/c', 'z/#'] },
        { effect: 'allow', actions: ['subscribe'], topics: ['z/public'] },
      ],
    },
    d1,
  );

  it.each<[string, 'allow' | 'deny' | 'no-match']>([
    ['a/x/#', 'allow'],
    ['a/x/1/2', 'allow'],
    ['a/y/+', 'allow'],
    ['a/+/#', 'no-match'], // "a/x/#" ∪ "a/y/#" does not cover "a/z/..." (and no single pattern covers it)
    ['a/#', 'no-match'],
    ['a/+', 'no-match'],
    ['b/open/c', 'allow'],
    ['b/+/c', 'deny'], // could match "b/secret/c"
    ['b/#', 'deny'],
    ['#', 'deny'],
    ['+/+/c', 'deny'],
    ['b/secret/c', 'deny'],
    ['b/secret/+', 'deny'],
    ['b/open/+', 'no-match'],
    ['z/public', 'deny'], // deny z/# wins over the literal allow
    ['+/public', 'deny'],
    ['$SYS/#', 'no-match'], // "#" in a deny pattern never reaches "$" topics, and nothing allows it
  ])('subscribe %j → %s', (filter, effect) => {
    expect(split.decide('subscribe', filter).effect).toBe(effect);
  });

  it('"$" topics are not granted by wildcard allow patterns', () => {
    const everything = compilePolicy({ statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['#', '+/#'] }] }, d1);
    expect(everything.decide('publish', '$SYS/x').effect).toBe('no-match');
    expect(everything.decide('receive', '$fleetgate/enroll/S1/accepted').effect).toBe('no-match');
    expect(everything.decide('subscribe', '$SYS/#').effect).toBe('no-match');
    expect(everything.decide('subscribe', '#').effect).toBe('allow');
  });
});
