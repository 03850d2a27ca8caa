import { describe, expect, it } from 'vitest';
import type { ErrorCode } from './errors.ts';
import { errorCodes } from './errors.ts';
import type { PolicyAction } from './policy.ts';
import { backendPolicy, compilePolicy, defaultDevicePolicy } from './policy.ts';
import { enrollRequestFilter, enrollTopics, renewRequestFilter, renewTopics, rotateTopic } from './protocol-topics.ts';
import type { SessionIdentity } from './session-scope.ts';
import { decideInScope } from './session-scope.ts';

type Row = readonly [PolicyAction, string, ErrorCode | 'allowed'];

function expectScope(identity: SessionIdentity, [action, topic, expected]: Row): void {
  const result = decideInScope(identity, action, topic);
  if (expected === 'allowed') {
    expect(result.allowed, `${action} ${topic}`).toBe(true);
    expect(result.code).toBeUndefined();
  } else {
    expect(result, `${action} ${topic}`).toMatchObject({ allowed: false, code: expected });
  }
}

describe('the gateway topics', () => {
  it('are built from the serial or device id', () => {
    expect(enrollTopics('S1')).toEqual({
      request: '$fleetgate/enroll/S1/request',
      accepted: '$fleetgate/enroll/S1/accepted',
      rejected: '$fleetgate/enroll/S1/rejected',
    });
    expect(renewTopics('d1')).toEqual({
      request: '$fleetgate/certs/d1/renew/request',
      accepted: '$fleetgate/certs/d1/renew/accepted',
      rejected: '$fleetgate/certs/d1/renew/rejected',
    });
    expect(enrollRequestFilter).toBe('$fleetgate/enroll/+/request');
    expect(renewRequestFilter).toBe('$fleetgate/certs/+/renew/request');
  });

  it('refusal codes are in the catalogue', () => {
    for (const code of ['ACL_CLAIM_SCOPE', 'ACL_RESERVED_TOPIC', 'ACL_PUBLISH_DENIED', 'ACL_SUBSCRIBE_DENIED', 'ACL_RECEIVE_DENIED', 'TOPIC_INVALID', 'TOPIC_FILTER_INVALID']) {
      expect(errorCodes).toContain(code);
    }
  });
});

describe('claim sessions: only their own enrollment topics, whatever the policy', () => {
  const claim: SessionIdentity = { kind: 'claim', serial: 'S1' };

  it.each<Row>([
    ['publish', '$fleetgate/enroll/S1/request', 'allowed'],
    ['subscribe', '$fleetgate/enroll/S1/accepted', 'allowed'],
    ['subscribe', '$fleetgate/enroll/S1/rejected', 'allowed'],
    ['receive', '$fleetgate/enroll/S1/accepted', 'allowed'],
    ['receive', '$fleetgate/enroll/S1/rejected', 'allowed'],
    // wrong direction on its own topics
    ['publish', '$fleetgate/enroll/S1/accepted', 'ACL_CLAIM_SCOPE'],
    ['publish', '$fleetgate/enroll/S1/rejected', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/enroll/S1/request', 'ACL_CLAIM_SCOPE'],
    ['receive', '$fleetgate/enroll/S1/request', 'ACL_CLAIM_SCOPE'],
    // other serials
    ['publish', '$fleetgate/enroll/S2/request', 'ACL_CLAIM_SCOPE'],
    ['publish', '$fleetgate/enroll/S10/request', 'ACL_CLAIM_SCOPE'],
    ['publish', '$fleetgate/enroll/s1/request', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/enroll/S2/accepted', 'ACL_CLAIM_SCOPE'],
    ['receive', '$fleetgate/enroll/S2/accepted', 'ACL_CLAIM_SCOPE'],
    ['receive', '$fleetgate/enroll/S2/rejected', 'ACL_CLAIM_SCOPE'],
    // wildcards, even ones that include its own topics
    ['subscribe', '$fleetgate/enroll/+/accepted', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/enroll/+/+', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/enroll/S1/+', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/enroll/S1/#', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/enroll/#', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/#', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '#', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '+/enroll/S1/accepted', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$SYS/#', 'ACL_CLAIM_SCOPE'],
    // everything else
    ['publish', 'devices/S1/telemetry', 'ACL_CLAIM_SCOPE'],
    ['subscribe', 'devices/S1/#', 'ACL_CLAIM_SCOPE'],
    ['receive', 'devices/S1/commands', 'ACL_CLAIM_SCOPE'],
    ['publish', '$fleetgate/certs/S1/renew/request', 'ACL_CLAIM_SCOPE'],
    ['subscribe', '$fleetgate/certs/S1/renew/accepted', 'ACL_CLAIM_SCOPE'],
    ['publish', '$fleetgate/enroll/S1/request/', 'ACL_CLAIM_SCOPE'],
    ['publish', '$fleetgate/enroll/S1/request/x', 'ACL_CLAIM_SCOPE'],
    ['publish', '$fleetgate/enroll/S1', 'ACL_CLAIM_SCOPE'],
    ['publish', '/$fleetgate/enroll/S1/request', 'ACL_CLAIM_SCOPE'],
    // topics that are not topics come first
    ['publish', '$fleetgate/enroll/+/request', 'TOPIC_INVALID'],
    ['publish', '$fleetgate/enroll/S1/#', 'TOPIC_INVALID'],
    ['publish', '', 'TOPIC_INVALID'],
    ['receive', '$fleetgate/enroll/S1/accepted\u0000', 'TOPIC_INVALID'],
    ['subscribe', '$fleetgate/enroll/S1/accepted#', 'TOPIC_FILTER_INVALID'],
    ['subscribe', '#/accepted', 'TOPIC_FILTER_INVALID'],
    ['subscribe', '', 'TOPIC_FILTER_INVALID'],
  ])('%s %j → %s', (...row) => {
    expectScope(claim, row);
  });
});

describe('device sessions: the policy, but never "$" topics except their own renewal', () => {
  const device: SessionIdentity = { kind: 'device', id: 'd1', policy: compilePolicy(defaultDevicePolicy, { id: 'd1', template: 'default', attributes: {} }) };

  it.each<Row>([
    // own renewal topics
    ['publish', '$fleetgate/certs/d1/renew/request', 'allowed'],
    ['subscribe', '$fleetgate/certs/d1/renew/accepted', 'allowed'],
    ['subscribe', '$fleetgate/certs/d1/renew/rejected', 'allowed'],
    ['receive', '$fleetgate/certs/d1/renew/accepted', 'allowed'],
    ['receive', '$fleetgate/certs/d1/renew/rejected', 'allowed'],
    // other "$" topics
    ['publish', '$fleetgate/certs/d1/renew/accepted', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/d1/renew/request', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/d1/renew/+', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/d1/#', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/+/renew/accepted', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/+/renew/request', 'ACL_RESERVED_TOPIC'],
    ['publish', '$fleetgate/certs/d2/renew/request', 'ACL_RESERVED_TOPIC'],
    ['receive', '$fleetgate/certs/d2/renew/accepted', 'ACL_RESERVED_TOPIC'],
    ['publish', '$fleetgate/enroll/d1/request', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/enroll/d1/accepted', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$SYS/#', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$SYS/broker/clients/connected', 'ACL_RESERVED_TOPIC'],
    ['publish', '$SYS/broker/uptime', 'ACL_RESERVED_TOPIC'],
    ['receive', '$SYS/broker/uptime', 'ACL_RESERVED_TOPIC'],
    ['publish', '$devices/d1/x', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$/#', 'ACL_RESERVED_TOPIC'],
    // the default policy
    ['publish', 'devices/d1/telemetry', 'allowed'],
    ['subscribe', 'devices/d1/#', 'allowed'],
    ['subscribe', 'devices/d1/commands/+', 'allowed'],
    ['receive', 'devices/d1/commands/reboot', 'allowed'],
    ['publish', 'devices/d2/telemetry', 'ACL_PUBLISH_DENIED'],
    ['publish', 'devices', 'ACL_PUBLISH_DENIED'],
    ['publish', 'other', 'ACL_PUBLISH_DENIED'],
    ['subscribe', 'devices/d2/#', 'ACL_SUBSCRIBE_DENIED'],
    ['subscribe', 'devices/+/commands', 'ACL_SUBSCRIBE_DENIED'],
    ['subscribe', 'devices/#', 'ACL_SUBSCRIBE_DENIED'],
    ['subscribe', '#', 'ACL_SUBSCRIBE_DENIED'],
    ['subscribe', '+/#', 'ACL_SUBSCRIBE_DENIED'],
    ['subscribe', '+/+/renew/accepted', 'ACL_SUBSCRIBE_DENIED'],
    ['receive', 'devices/d2/commands', 'ACL_RECEIVE_DENIED'],
    // invalid topics first
    ['publish', 'devices/d1/+', 'TOPIC_INVALID'],
    ['publish', 'devices/d1/#', 'TOPIC_INVALID'],
    ['publish', 'devices/d1/x\u0000', 'TOPIC_INVALID'],
    ['receive', 'devices/d1/+', 'TOPIC_INVALID'],
    ['publish', '$SYS/+', 'TOPIC_INVALID'],
    ['subscribe', 'devices/d1/#/x', 'TOPIC_FILTER_INVALID'],
    ['subscribe', 'devices/d1/x#', 'TOPIC_FILTER_INVALID'],
    ['subscribe', 'devices/d1+', 'TOPIC_FILTER_INVALID'],
    ['subscribe', '$SYS/#/x', 'TOPIC_FILTER_INVALID'],
  ])('%s %j → %s', (...row) => {
    expectScope(device, row);
  });

  it('refuses a topic over 65535 UTF-8 bytes before asking the policy', () => {
    expectScope(device, ['publish', `devices/d1/${'x'.repeat(65535 - 'devices/d1/'.length)}`, 'allowed']);
    expectScope(device, ['publish', `devices/d1/${'x'.repeat(65536 - 'devices/d1/'.length)}`, 'TOPIC_INVALID']);
    expectScope(device, ['subscribe', `devices/d1/${'é'.repeat(32763)}/#`, 'TOPIC_FILTER_INVALID']); // 11 + 65526 + 2 bytes
  });

  it('passes the policy decision along, allowed or not', () => {
    expect(decideInScope(device, 'publish', 'devices/d1/x')).toEqual({
      allowed: true,
      decision: { effect: 'allow', statementIndex: 0, sid: 'own-topics', pattern: 'devices/d1/#' },
    });
    expect(decideInScope(device, 'publish', 'devices/d2/x')).toEqual({ allowed: false, code: 'ACL_PUBLISH_DENIED', decision: { effect: 'no-match' } });
  });

  it('no policy can grant "$" topics', () => {
    const everything = compilePolicy(
      { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['#', '$SYS/#', '$fleetgate/#'] }] },
      { id: 'd1', template: 't', attributes: {} },
    );
    const greedy: SessionIdentity = { kind: 'device', id: 'd1', policy: everything };
    expectScope(greedy, ['subscribe', '#', 'allowed']);
    expectScope(greedy, ['subscribe', '$SYS/#', 'ACL_RESERVED_TOPIC']);
    expectScope(greedy, ['receive', '$SYS/broker/uptime', 'ACL_RESERVED_TOPIC']);
    expectScope(greedy, ['publish', '$fleetgate/enroll/S1/accepted', 'ACL_RESERVED_TOPIC']);
    expectScope(greedy, ['subscribe', '$fleetgate/enroll/+/request', 'ACL_RESERVED_TOPIC']);
    expectScope(greedy, ['publish', '$fleetgate/certs/d2/renew/request', 'ACL_RESERVED_TOPIC']);
  });

  it('own renewal topics need no policy, and a deny-all policy does not take them away', () => {
    const denyAll = compilePolicy(
      { statements: [{ effect: 'deny', actions: ['publish', 'subscribe', 'receive'], topics: ['#'] }] },
      { id: 'd1', template: 't', attributes: {} },
    );
    const locked: SessionIdentity = { kind: 'device', id: 'd1', policy: denyAll };
    expectScope(locked, ['publish', '$fleetgate/certs/d1/renew/request', 'allowed']);
    expectScope(locked, ['subscribe', '$fleetgate/certs/d1/renew/accepted', 'allowed']);
    expectScope(locked, ['publish', 'devices/d1/x', 'ACL_PUBLISH_DENIED']);
  });

  it('a backend service reaches every device topic but no "$" topic', () => {
    const service: SessionIdentity = {
      kind: 'device',
      id: 'analytics',
      policy: compilePolicy(backendPolicy, { id: 'analytics', template: 'service', attributes: {} }),
    };
    expectScope(service, ['subscribe', 'devices/#', 'allowed']);
    expectScope(service, ['publish', 'devices/d1/commands/reboot', 'allowed']);
    expectScope(service, ['subscribe', '#', 'ACL_SUBSCRIBE_DENIED']);
    expectScope(service, ['subscribe', '$fleetgate/enroll/+/accepted', 'ACL_RESERVED_TOPIC']);
  });
});

describe('the rotate command topic: a device subscribes to and receives its own, never sends one or reads another', () => {
  const device: SessionIdentity = { kind: 'device', id: 'd1', policy: compilePolicy(defaultDevicePolicy, { id: 'd1', template: 'default', attributes: {} }) };
  const greedy: SessionIdentity = {
    kind: 'device',
    id: 'd1',
    policy: compilePolicy({ statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['#', '$fleetgate/#'] }] }, { id: 'd1', template: 't', attributes: {} }),
  };

  it('is built from the device id', () => {
    expect(rotateTopic('d1')).toBe('$fleetgate/certs/d1/rotate');
  });

  it.each<Row>([
    ['subscribe', '$fleetgate/certs/d1/rotate', 'allowed'],
    ['receive', '$fleetgate/certs/d1/rotate', 'allowed'],
    // a device must never be able to tell itself, or anyone, to rotate
    ['publish', '$fleetgate/certs/d1/rotate', 'ACL_RESERVED_TOPIC'],
    ['publish', '$fleetgate/certs/d2/rotate', 'ACL_RESERVED_TOPIC'],
    // nor learn when another device is told
    ['subscribe', '$fleetgate/certs/d2/rotate', 'ACL_RESERVED_TOPIC'],
    ['receive', '$fleetgate/certs/d2/rotate', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/d10/rotate', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/D1/rotate', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/+/rotate', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/d1/+', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/d1/rotate/#', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '$fleetgate/certs/#', 'ACL_RESERVED_TOPIC'],
    ['subscribe', '+/certs/d1/rotate', 'ACL_SUBSCRIBE_DENIED'],
    ['receive', '$fleetgate/certs/d1/rotate/x', 'ACL_RESERVED_TOPIC'],
    ['receive', '$fleetgate/certs/d1/rotatex', 'ACL_RESERVED_TOPIC'],
  ])('%s %j → %s', (...row) => {
    expectScope(device, row);
  });

  it('no policy widens it', () => {
    expectScope(greedy, ['publish', '$fleetgate/certs/d1/rotate', 'ACL_RESERVED_TOPIC']);
    expectScope(greedy, ['subscribe', '$fleetgate/certs/+/rotate', 'ACL_RESERVED_TOPIC']);
    expectScope(greedy, ['receive', '$fleetgate/certs/d2/rotate', 'ACL_RESERVED_TOPIC']);
  });

  it('claim sessions get none of it, not even for their own serial', () => {
    const claim: SessionIdentity = { kind: 'claim', serial: 'd1' };
    expectScope(claim, ['subscribe', '$fleetgate/certs/d1/rotate', 'ACL_CLAIM_SCOPE']);
    expectScope(claim, ['receive', '$fleetgate/certs/d1/rotate', 'ACL_CLAIM_SCOPE']);
  });
});
