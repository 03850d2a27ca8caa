import { describe, expect, it } from 'vitest';
import {
  assertTopicFilter,
  assertTopicName,
  filterCovers,
  filtersIntersect,
  isReservedTopic,
  isValidTopicFilter,
  isValidTopicName,
  topicMatches,
} from './topic.ts';

// The tables follow MQTT 3.1.1 §4.7 and eclipse/mosquitto test/unit/util_topic_test.c.

describe('topic names (MQTT 3.1.1 §4.7, [MQTT-3.3.2-2])', () => {
  it.each([
    ['pub/topic', true],
    ['pub//topic', true], // empty levels are legal
    ['pub/ /topic', true],
    ['/', true],
    ['//', true],
    ['/leading', true],
    ['trailing/', true],
    ['$SYS/broker/load', true],
    ['$fleetgate/enroll/S1/request', true],
    ['ünïcødé/トピック', true],
    ['x', true],
    ['', false], // [MQTT-4.7.3-1]
    ['+pub/topic', false],
    ['pub+/topic', false],
    ['pub/+topic', false],
    ['pub/topic+', false],
    ['pub/topic/+', false],
    ['#pub/topic', false],
    ['pub#/topic', false],
    ['pub/#topic', false],
    ['pub/topic#', false],
    ['pub/topic/#', false],
    ['+/pub/topic', false],
    ['+', false],
    ['#', false],
    ['nul\u0000byte', false], // [MQTT-4.7.3-2]
    ['\u0000', false],
  ])('%j valid: %s', (topic, valid) => {
    expect(isValidTopicName(topic)).toBe(valid);
  });

  it('limits the length in UTF-8 bytes, not UTF-16 code units [MQTT-4.7.3-3]', () => {
    expect(isValidTopicName('a'.repeat(65535))).toBe(true);
    expect(isValidTopicName('a'.repeat(65536))).toBe(false);
    // "é" is two bytes in UTF-8: 32767 × 2 + 1 = 65535 bytes, 32768 × 2 = 65536 bytes.
    expect(isValidTopicName('é'.repeat(32767) + 'a')).toBe(true);
    expect(isValidTopicName('é'.repeat(32768))).toBe(false);
    // "€" is three bytes: 21845 × 3 = 65535 bytes.
    expect(isValidTopicName('€'.repeat(21845))).toBe(true);
    expect(isValidTopicName('€'.repeat(21845) + 'a')).toBe(false);
    // An astral character is one code point, two UTF-16 units, four UTF-8 bytes.
    expect(isValidTopicName('😀'.repeat(16383) + 'abc')).toBe(true);
    expect(isValidTopicName('😀'.repeat(16384))).toBe(false);
  });

  it('assertTopicName returns the topic or throws TOPIC_INVALID', () => {
    expect(assertTopicName('devices/d1/telemetry')).toBe('devices/d1/telemetry');
    for (const bad of ['', 'a/+', 'a/#', 'a\u0000b', 'a'.repeat(65536)]) {
      expect(() => assertTopicName(bad)).toThrow(expect.objectContaining({ code: 'TOPIC_INVALID' }));
    }
  });
});

describe('topic filters (MQTT 3.1.1 §4.7.1)', () => {
  it.each([
    ['sub/topic', true],
    ['sub//topic', true],
    ['sub/ /topic', true],
    ['sub/+/topic', true],
    ['+/+/+', true],
    ['+', true],
    ['sub/topic/#', true],
    ['sub//topic/#', true],
    ['sub/ /topic/#', true],
    ['sub/+/topic/#', true],
    ['+/+/+/#', true],
    ['#', true],
    ['/#', true],
    ['/+', true],
    ['+/', true],
    ['/', true],
    ['+/#', true],
    ['$SYS/#', true],
    ['$SYS/+/load', true],
    ['', false], // [MQTT-4.7.3-1]
    ['+sub/topic', false], // [MQTT-4.7.1-3] "+" must occupy a whole level
    ['sub+/topic', false],
    ['sub/+topic', false],
    ['sub/topic+', false],
    ['++', false],
    ['a/++/b', false],
    ['#sub/topic', false], // [MQTT-4.7.1-2] "#" alone in its level and last
    ['sub#/topic', false],
    ['sub/#topic', false],
    ['sub/topic#', false],
    ['#/sub/topic', false],
    ['#/', false],
    ['#/#', false],
    ['a/#/b', false],
    ['a/#/#', false],
    ['##', false],
    ['+#', false],
    ['#+', false],
    ['$#', false],
    ['$+/a', false],
    ['a\u0000/#', false], // [MQTT-4.7.3-2]
  ])('%j valid: %s', (filter, valid) => {
    expect(isValidTopicFilter(filter)).toBe(valid);
  });

  it('limits the length in UTF-8 bytes [MQTT-4.7.3-3]', () => {
    expect(isValidTopicFilter('a'.repeat(65533) + '/#')).toBe(true);
    expect(isValidTopicFilter('a'.repeat(65534) + '/#')).toBe(false);
    expect(isValidTopicFilter('é'.repeat(32766) + '/#')).toBe(true); // 65532 + 2 bytes
    expect(isValidTopicFilter('é'.repeat(32767) + '/#')).toBe(false); // 65534 + 2 bytes
  });

  it('assertTopicFilter returns the filter or throws TOPIC_FILTER_INVALID', () => {
    expect(assertTopicFilter('devices/+/telemetry/#')).toBe('devices/+/telemetry/#');
    for (const bad of ['', 'a/#/b', 'a/b#', 'a/+b', 'a\u0000', '/'.repeat(65536)]) {
      expect(() => assertTopicFilter(bad)).toThrow(expect.objectContaining({ code: 'TOPIC_FILTER_INVALID' }));
    }
  });

  it.each([
    ['$SYS/broker', true],
    ['$fleetgate/enroll/S1/request', true],
    ['$', true],
    ['a/$SYS', false],
    ['/$SYS', false],
    ['SYS$', false],
  ])('%j reserved: %s', (topic, reserved) => {
    expect(isReservedTopic(topic)).toBe(reserved);
  });
});

describe('topicMatches', () => {
  // [filter, topic, matches]
  const valid: readonly (readonly [string, string, boolean])[] = [
    // mosquitto TEST_valid_matching
    ['foo/#', 'foo/', true],
    ['foo/#', 'foo', true], // "#" also matches the parent level [MQTT-4.7.1-2]
    ['foo//bar', 'foo//bar', true],
    ['foo//+', 'foo//bar', true],
    ['foo/+/+/baz', 'foo///baz', true],
    ['foo/bar/+', 'foo/bar/', true], // "+" matches an empty level
    ['foo/bar', 'foo/bar', true],
    ['foo/+', 'foo/bar', true],
    ['foo/+/baz', 'foo/bar/baz', true],
    ['A/B/+/#', 'A/B/B/C', true],
    ['foo/+/#', 'foo/bar/baz', true],
    ['foo/+/#', 'foo/bar', true],
    ['#', 'foo/bar/baz', true],
    ['#', '/foo/bar', true],
    ['/#', '/foo/bar', true],
    // mosquitto TEST_valid_no_matching
    ['test/6/#', 'test/3', false],
    ['foo/bar', 'foo', false],
    ['foo/+', 'foo/bar/baz', false],
    ['foo/+/baz', 'foo/bar/bar', false],
    ['foo/+/#', 'fo2/bar/baz', false],
    ['/#', 'foo/bar', false],
    ['#', '$SYS/bar', false], // [MQTT-4.7.2-1]
    ['$BOB/bar', '$SYS/bar', false],
    // MQTT 3.1.1 §4.7.1 examples and "$" rules
    ['sport/tennis/player1/#', 'sport/tennis/player1', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/ranking', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon', true],
    ['sport/#', 'sport', true],
    ['sport/tennis/+', 'sport/tennis/player1', true],
    ['sport/tennis/+', 'sport/tennis/player1/ranking', false],
    ['sport/+', 'sport', false],
    ['sport/+', 'sport/', true],
    ['+/+', '/finance', true],
    ['/+', '/finance', true],
    ['+', '/finance', false],
    ['+', '/', false], // "/" has two (empty) levels
    ['+/+', '/', true],
    ['/+', '/', true],
    ['#', '/', true],
    ['/#', '/', true],
    ['/#', '/a/b', true],
    ['+/+/+', '//', true],
    ['+', '//', false],
    ['+', 'a', true],
    ['#', 'a', true],
    ['a', 'a/', false],
    ['a/', 'a', false],
    ['a/#', 'ab', false],
    ['a/#', 'a/b/c/d/e', true],
    ['a/+/#', 'a', false],
    ['+/#', 'a', true],
    ['$SYS/#', '$SYS/broker/load', true],
    ['$SYS/#', '$SYS', true],
    ['$SYS/+', '$SYS/x', true],
    ['+/x', '$SYS/x', false], // [MQTT-4.7.2-1]
    ['+', '$SYS', false],
    ['+/#', '$SYS/x', false],
    ['#', '$', false],
    ['$fleetgate/enroll/+/accepted', '$fleetgate/enroll/S1/accepted', true],
    ['+/enroll/+/accepted', '$fleetgate/enroll/S1/accepted', false],
    ['a/+', 'a/$x', true], // "$" only matters in the first level
    ['foo/#', 'foo/$bar', true],
    ['foo/+/baz', 'foo/$bar/baz', true],
    ['Case/Sensitive', 'case/sensitive', false],
    ['a b/+', 'a b/c d', true],
  ];

  // "Invalid but naively matching": a string-based matcher would say yes; a valid filter and name are required.
  const invalid: readonly (readonly [string, string])[] = [
    ['+foo', '+foo'],
    ['fo+o', 'fo+o'],
    ['foo+', 'foo+'],
    ['+foo/bar', '+foo/bar'],
    ['foo+/bar', 'foo+/bar'],
    ['foo/+bar', 'foo/+bar'],
    ['foo/bar+', 'foo/bar+'],
    ['+foo', 'afoo'],
    ['fo+o', 'foao'],
    ['foo+', 'fooa'],
    ['+foo/bar', 'afoo/bar'],
    ['foo+/bar', 'fooa/bar'],
    ['foo/+bar', 'foo/abar'],
    ['foo/bar+', 'foo/bara'],
    ['#foo', '#foo'],
    ['fo#o', 'fo#o'],
    ['foo#', 'foo#'],
    ['#foo/bar', '#foo/bar'],
    ['foo#/bar', 'foo#/bar'],
    ['foo/#bar', 'foo/#bar'],
    ['foo/bar#', 'foo/bar#'],
    ['a/b#', 'a/b'],
    ['a/b#', 'a/bc'],
    ['a/+b', 'a/xb'],
    ['#/a', 'x/a'],
    ['#/a', 'a'],
    ['a/#/b', 'a/x/b'],
    // topic names containing wildcards are not topic names [MQTT-3.3.2-2]
    ['foo/+', 'foo/+'],
    ['foo/#', 'foo/+'],
    ['foo/+', 'foo/bar/+'],
    ['foo/#', 'foo/bar/+'],
    ['foo/+', 'foo/#'],
    ['foo/#', 'foo/#'],
    ['foo/+', 'foo/bar/#'],
    ['foo/#', 'foo/bar/#'],
    ['#', '#'],
    ['+', '+'],
    ['#', 'a/+'],
    // mosquitto TEST_invalid
    ['foo#', 'foo'],
    ['fo#o/', 'foo'],
    ['foo#', 'fooa'],
    ['foo+', 'foo'],
    ['foo/#a', 'foo'],
    ['#a', 'foo'],
    ['foo/#abc', 'foo'],
    ['#abc', 'foo'],
    ['/#a', 'foo/bar'],
    // empty input (mosquitto TEST_empty_input) and NUL
    ['sub', ''],
    ['', 'topic'],
    ['', ''],
    ['#', ''],
    ['a\u0000', 'a\u0000'],
    ['#', 'a\u0000'],
  ];

  it.each(valid)('%j vs %j: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });

  it.each(invalid)('invalid %j vs %j never matches', (filter, topic) => {
    expect(topicMatches(filter, topic)).toBe(false);
  });

  it('matches long topics at the byte limit and refuses one byte more', () => {
    const max = 'a/'.repeat(32767) + 'a'; // 65535 bytes
    expect(topicMatches('#', max)).toBe(true);
    expect(topicMatches('a/#', max)).toBe(true);
    expect(topicMatches('#', max + 'a')).toBe(false);
  });
});

describe('filterCovers (set containment: every topic matched by inner is matched by outer)', () => {
  // [outer, inner, covers]
  const table: readonly (readonly [string, string, boolean])[] = [
    ['devices/a/#', 'devices/a/#', true],
    ['devices/+/#', 'devices/a/#', true],
    ['devices/a/#', 'devices/+/x', false],
    ['devices/a/#', 'devices/a/x', true],
    ['devices/a/#', 'devices/a', true], // "#" matches the parent
    ['devices/a/#', 'devices/a/+', true],
    ['devices/a/#', 'devices/a/+/#', true],
    ['devices/a/#', 'devices/#', false],
    ['devices/a/#', 'devices/+', false],
    ['devices/a/#', 'devices', false],
    ['devices/#', '#', false],
    ['#', 'devices/#', true],
    ['#', '#', true],
    ['#', '+', true],
    ['#', '+/+/#', true],
    ['#', '/', true],
    ['+', '+', true],
    ['+', 'a', true],
    ['+', '#', false],
    ['+', 'a/b', false],
    ['+', '/', false],
    ['+/+', '/', true],
    ['+/+', '/+', true],
    ['+/+', '+/+/+', false],
    ['a/+', 'a/#', false],
    ['a/+', 'a', false],
    ['a/+/#', 'a/#', false], // "a/#" matches "a", "a/+/#" does not
    ['a/+/#', 'a/b', true],
    ['a/+/#', 'a/+', true],
    ['a/b', 'a/+', false],
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/', false],
    ['a//b', 'a/+/b', false],
    ['a/+/b', 'a//b', true],
    // "$" topics: only a literal first level reaches them [MQTT-4.7.2-1]
    ['#', '$SYS/#', false],
    ['#', '$SYS/x', false],
    ['#', '$SYS', false],
    ['+/#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['+', '$SYS', false],
    ['$SYS/#', '$SYS/x', true],
    ['$SYS/#', '$SYS', true],
    ['$SYS/#', '$SYS/+/x', true],
    ['$SYS/#', '#', false],
    ['$SYS/#', '+/#', false],
    ['$SYS/+', '+/x', false],
    ['$SYS/#', '$OTHER/#', false],
    ['#', '+/$x', true], // "$" deeper than the first level is an ordinary character
    ['a/#', 'a/$x/#', true],
    // invalid on either side never covers
    ['#', 'a/b#', false],
    ['#', 'a/+b', false],
    ['#', '#/a', false],
    ['a/b#', 'a/b', false],
    ['#/a', 'x/a', false],
    ['#', '', false],
    ['', '', false],
  ];

  it.each(table)('%j ⊇ %j: %s', (outer, inner, expected) => {
    expect(filterCovers(outer, inner)).toBe(expected);
  });

  it('agrees with topicMatches when the inner filter is a topic name', () => {
    const filters = ['#', '+', '+/#', 'a/#', 'a/+', '/+', '+/+', '$SYS/#', 'a/b', '/#'];
    const topics = ['a', 'a/b', 'a/b/c', '/', '/a', 'a/', '$SYS', '$SYS/x', 'b'];
    for (const filter of filters) {
      for (const topic of topics) expect(filterCovers(filter, topic), `${filter} ⊇ ${topic}`).toBe(topicMatches(filter, topic));
    }
  });
});

describe('filtersIntersect (is there a topic both filters match?)', () => {
  // [a, b, intersect]
  const table: readonly (readonly [string, string, boolean])[] = [
    ['#', '#', true],
    ['#', '+', true],
    ['#', 'a/b/c', true],
    ['+', 'a', true],
    ['+', 'a/b', false],
    ['+', '/', false],
    ['+/+', '/', true],
    ['a/#', 'a', true], // "a" is the parent of "a/#"
    ['a/#', 'a/b/c', true],
    ['a/#', 'b/#', false],
    ['a/b/#', 'a', false],
    ['a/+', 'a', false],
    ['a/+', '+/b', true],
    ['a/+/c', '+/b/+', true],
    ['a/+/c', '+/b/d', false],
    ['devices/d1/#', 'devices/+/x', true],
    ['devices/d1/#', 'devices/d2/#', false],
    ['devices/+', 'devices/+/x', false],
    ['/#', 'a/#', false],
    ['/#', '+/a', true],
    ['a//b', 'a/+/b', true],
    ['a//b', 'a/x/b', false],
    // "$" topics
    ['#', '$SYS/x', false],
    ['#', '$SYS/#', false],
    ['+/x', '$SYS/x', false],
    ['+/#', '$SYS', false],
    ['+', '$SYS', false],
    ['$SYS/#', '$SYS/x', true],
    ['$SYS/#', '$SYS', true],
    ['$SYS/+', '$SYS/x', true],
    ['$SYS/#', '$OTHER/#', false],
    ['+/$x', 'a/#', true], // "$" only matters in the first level
    ['#', '+/$x', true],
    // invalid never intersects
    ['#', 'a/b#', false],
    ['a/+b', 'a/+b', false],
    ['#/a', '#', false],
    ['#', '', false],
  ];

  it.each(table)('%j ∩ %j ≠ ∅: %s', (a, b, expected) => {
    expect(filtersIntersect(a, b)).toBe(expected);
    expect(filtersIntersect(b, a)).toBe(expected); // symmetric
  });

  it('agrees with topicMatches when one side is a topic name', () => {
    const filters = ['#', '+', '+/#', 'a/#', 'a/+', '/+', '+/+', '$SYS/#', 'a/b', '/#'];
    const topics = ['a', 'a/b', 'a/b/c', '/', '/a', 'a/', '$SYS', '$SYS/x', 'b'];
    for (const filter of filters) {
      for (const topic of topics) expect(filtersIntersect(filter, topic), `${filter} ∩ ${topic}`).toBe(topicMatches(filter, topic));
    }
  });
});
