import { FleetgateError } from './errors.ts';

/**
 * MQTT 3.1.1 topic names and filters (§4.7), and the set relations between filters that ACLs need.
 * A topic is a list of levels split on "/"; empty levels are legal ("a//b", "/a").
 */

const maxTopicBytes = 65535; // [MQTT-4.7.3-3]
const encoder = new TextEncoder();

function hasValidLength(value: string): boolean {
  // [MQTT-4.7.3-1] at least one character; [MQTT-4.7.3-2] no NUL.
  // A UTF-16 code unit is at most 3 UTF-8 bytes: only long strings need encoding (this runs per message).
  const short = value.length * 3 <= maxTopicBytes;
  return value.length > 0 && !value.includes('\u0000') && (short || encoder.encode(value).length <= maxTopicBytes);
}

export function isValidTopicName(topic: string): boolean {
  // [MQTT-3.3.2-2] no wildcard characters in a topic name.
  return hasValidLength(topic) && !topic.includes('+') && !topic.includes('#');
}

export function isValidTopicFilter(filter: string): boolean {
  if (!hasValidLength(filter)) return false;
  const levels = filter.split('/');
  return levels.every((level, index) => {
    if (level === '#') return index === levels.length - 1; // [MQTT-4.7.1-2]
    if (level === '+') return true;
    return !level.includes('#') && !level.includes('+'); // [MQTT-4.7.1-3]
  });
}

export function assertTopicName(topic: string): string {
  if (!isValidTopicName(topic)) throw new FleetgateError('TOPIC_INVALID', { detail: { topic: topic.slice(0, 256) } });
  return topic;
}

export function assertTopicFilter(filter: string): string {
  if (!isValidTopicFilter(filter)) throw new FleetgateError('TOPIC_FILTER_INVALID', { detail: { filter: filter.slice(0, 256) } });
  return filter;
}

/** "$SYS/…", "$fleetgate/…": wildcards in the first level never match these [MQTT-4.7.2-1]. */
export function isReservedTopic(topic: string): boolean {
  return topic.startsWith('$');
}

/** Does `filter` match the topic name `topic`? Both must be valid; an invalid one never matches. */
export function topicMatches(filter: string, topic: string): boolean {
  if (!isValidTopicFilter(filter) || !isValidTopicName(topic)) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  if (isReservedTopic(topic) && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true; // also matches the parent: "a/#" matches "a" [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Is every topic matched by `inner` also matched by `outer`? (set containment, not string comparison)
 * "devices/a/#" ⊆ "devices/+/#", "devices/+/x" ⊄ "devices/a/#", "#" ⊄ "devices/#", "$SYS/#" ⊄ "#".
 */
export function filterCovers(outer: string, inner: string): boolean {
  if (!isValidTopicFilter(outer) || !isValidTopicFilter(inner)) return false;
  const o = outer.split('/');
  const n = inner.split('/');
  // inner may match "$…" topics only through a literal first level; outer's wildcards would miss them.
  if (!isWildcard(n[0]) && isReservedTopic(n[0] ?? '') && isWildcard(o[0])) return false;
  for (let i = 0; ; i++) {
    const ol = o[i];
    const nl = n[i];
    if (ol === '#') return true;
    if (nl === undefined) return ol === undefined; // inner ends here: outer must end too (or be "#", above)
    if (ol === undefined) return false; // inner matches longer topics than outer can
    if (nl === '#') return false; // inner matches any depth, outer does not
    if (nl === '+') {
      if (ol !== '+') return false;
    } else if (ol !== '+' && ol !== nl) {
      return false;
    }
  }
}

/** Is there at least one topic that both filters match? */
export function filtersIntersect(a: string, b: string): boolean {
  if (!isValidTopicFilter(a) || !isValidTopicFilter(b)) return false;
  const x = a.split('/');
  const y = b.split('/');
  // A "$…" first level is reachable only by the same literal, never by a wildcard.
  if (isWildcard(x[0]) !== isWildcard(y[0])) {
    const literal = isWildcard(x[0]) ? y[0] : x[0];
    if (isReservedTopic(literal ?? '')) return false;
  }
  for (let i = 0; ; i++) {
    const xl = x[i];
    const yl = y[i];
    if (xl === '#' || yl === '#') return true;
    if (xl === undefined || yl === undefined) return xl === yl;
    if (xl !== '+' && yl !== '+' && xl !== yl) return false;
  }
}

function isWildcard(level: string | undefined): boolean {
  return level === '+' || level === '#';
}
