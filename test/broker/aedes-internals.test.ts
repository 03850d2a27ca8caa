import { describe, expect, it } from 'vitest';
import { assertPinnedVersions, installedVersions, pinnedVersions, versionMismatch } from '../../broker/aedes-internals.ts';

/**
 * broker/aedes-internals.ts patches internals of exact versions of aedes and its parts; the broker must
 * refuse to start on any other (broker/gateway-broker.ts calls `assertPinnedVersions` first).
 */
describe('the version check of the aedes internals', () => {
  it('finds the pinned versions installed, as aedes resolves them', () => {
    expect(installedVersions()).toEqual(pinnedVersions);
    expect(() => assertPinnedVersions()).not.toThrow();
  });

  it('refuses any other version, naming the package, the expected and the found version, and what to do', () => {
    const found = { ...pinnedVersions, aedes: '1.3.0' };
    expect(() => assertPinnedVersions(found)).toThrow(/aedes 1\.2\.0 expected, 1\.3\.0 found/);
    expect(versionMismatch(found)).toMatch(/npm ci/);
    expect(versionMismatch(found)).toMatch(/broker\/aedes-internals\.ts/);
    expect(versionMismatch(found)).not.toMatch(/mqemitter/);
  });

  it('lists every package off the pin, and a missing one as none', () => {
    const message = versionMismatch({ ...pinnedVersions, mqemitter: '7.1.1', 'aedes-persistence': undefined });
    expect(message).toMatch(/mqemitter 7\.1\.0 expected, 7\.1\.1 found; aedes-persistence 11\.0\.0 expected, none found/);
  });

  it('accepts exactly the pinned versions', () => {
    expect(versionMismatch(pinnedVersions)).toBeUndefined();
  });
});
