import { describe, expect, it } from 'vitest';
import { assertAttributes, isValidDeviceId } from './device-id.ts';

describe('device ids', () => {
  it.each([
    ['sensor-0001', true],
    ['A', true],
    ['a.b_c:d-e', true],
    ['x'.repeat(128), true],
    ['x'.repeat(129), false],
    ['', false],
    ['-leading-dash', false],
    ['has/slash', false],
    ['has+plus', false],
    ['has#hash', false],
    ['has space', false],
    ['nul\u0000byte', false],
    ['$SYS', false],
  ])('%j valid: %s', (id, valid) => {
    expect(isValidDeviceId(id)).toBe(valid);
  });

  it('refuses attribute values that would change a topic level', () => {
    expect(assertAttributes({ site: 'plant-7' })).toEqual({ site: 'plant-7' });
    for (const bad of ['a/b', '+', '#', '']) expect(() => assertAttributes({ site: bad })).toThrow(expect.objectContaining({ code: 'ATTRIBUTE_INVALID' }));
    expect(() => assertAttributes({ 'bad name': 'x' })).toThrow(expect.objectContaining({ code: 'ATTRIBUTE_INVALID' }));
  });
});
