import { describe, expect, it } from 'vitest';
import { isFleetgateError } from './errors.ts';
import { formatRotationSelector, parseRotationRate, parseRotationSelector, rotationCampaignTransition } from './rotation-campaign.ts';

const codeOf = (work: () => unknown) => {
  try {
    work();
  } catch (error) {
    return isFleetgateError(error) ? error.code : String(error);
  }
  return undefined;
};

describe('parseRotationSelector', () => {
  it.each([
    ['template=sensor', { kind: 'template', template: 'sensor' }],
    ['ca=device-2027', { kind: 'ca', caId: 'device-2027' }],
    ['expires-within=30d', { kind: 'expires-within', days: 30 }],
    ['expires-within=12h', { kind: 'expires-within', days: 0.5 }],
  ])('%s', (text, selector) => {
    expect(parseRotationSelector(text)).toEqual(selector);
    expect(formatRotationSelector(parseRotationSelector(text))).toBe(text);
  });

  it('reads ids from the list, without duplicates', () => {
    expect(parseRotationSelector('ids', ['a', 'b', 'a'])).toEqual({ kind: 'ids', ids: ['a', 'b'] });
    expect(formatRotationSelector(parseRotationSelector('ids', ['a', 'b']))).toBe('ids (2)');
  });

  it.each([
    ['', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['owner=me', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['template=', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['template=a/b', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['template=#', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['ca=', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['expires-within=30', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['expires-within=0d', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['expires-within=-1d', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['expires-within=1w', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['ids', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['ids', [], 'ROTATION_SELECTOR_INVALID'],
    ['ids=a,b', undefined, 'ROTATION_SELECTOR_INVALID'],
    ['ids', ['ok', 'no/slash'], 'DEVICE_ID_INVALID'],
    ['ids', ['+'], 'DEVICE_ID_INVALID'],
    ['template=t', ['a'], 'ROTATION_SELECTOR_INVALID'],
  ] as const)('refuses %j %j with %s', (text, ids, code) => {
    expect(codeOf(() => parseRotationSelector(text, ids as readonly string[] | undefined))).toBe(code);
  });
});

describe('parseRotationRate', () => {
  it('reads 50/s and 50', () => {
    expect(parseRotationRate('50/s')).toBe(50);
    expect(parseRotationRate('7')).toBe(7);
  });
  it.each(['0/s', '1001/s', '5/m', 'fast', '-1', '1.5'])('refuses %s', (text) => {
    expect(codeOf(() => parseRotationRate(text))).toBe('REQUEST_INVALID');
  });
});

describe('rotationCampaignTransition', () => {
  it.each([
    ['running', 'pause', 'paused'],
    ['paused', 'resume', 'running'],
    ['running', 'close', 'closed'],
    ['paused', 'close', 'closed'],
    ['running', 'resume', 'ROTATION_CAMPAIGN_STATE'],
    ['paused', 'pause', 'ROTATION_CAMPAIGN_STATE'],
    ['closed', 'resume', 'ROTATION_CAMPAIGN_STATE'],
    ['closed', 'close', 'ROTATION_CAMPAIGN_STATE'],
    ['completed', 'pause', 'ROTATION_CAMPAIGN_STATE'],
    ['completed', 'close', 'ROTATION_CAMPAIGN_STATE'],
  ] as const)('%s + %s → %s', (from, action, expected) => {
    const next = rotationCampaignTransition(from, action);
    expect('to' in next ? next.to : next.code).toBe(expected);
  });
});
