import { describe, expect, it } from 'vitest';
import { withoutPassword } from '../../cli/settings.ts';

describe('withoutPassword', () => {
  it.each([
    ['postgres://app:s3cret@db.internal/fleet', 's3cret'],
    ['postgres://app:s3cr/t@db.internal/fleet', 's3cr/t'],
    ['redis://:hun/ter2@cache:6379', 'hun/ter2'],
    ['redis://:p@ss@cache:6379/0', 'p@ss'],
  ])('hides the password of %s', (url, password) => {
    expect(withoutPassword(url)).not.toContain(password);
  });
});
