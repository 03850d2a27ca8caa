import { FleetgateError } from './errors.ts';

/** README "How it decides": no "/", "+", "#", NUL or spaces, so an id can be substituted into a topic as one level. */
const deviceIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function isValidDeviceId(id: unknown): id is string {
  return typeof id === 'string' && deviceIdPattern.test(id);
}

export function assertDeviceId(id: unknown): string {
  if (!isValidDeviceId(id)) throw new FleetgateError('DEVICE_ID_INVALID', { detail: { id: String(id).slice(0, 200) } });
  return id;
}

/** Attribute names are identifiers; values are single topic levels, safe to substitute into a policy. */
const attributeNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
// No "$" first: substituted as a first level it would make a topic reserved.
const attributeValuePattern = /^(?!\$)[^/+#\u0000]{1,256}$/;

export type DeviceAttributes = Readonly<Record<string, string>>;

export function assertAttributes(value: unknown): DeviceAttributes {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new FleetgateError('ATTRIBUTE_INVALID');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 64) throw new FleetgateError('ATTRIBUTE_INVALID', { detail: { reason: 'more than 64 attributes' } });
  const result: Record<string, string> = {};
  for (const [name, raw] of entries) {
    if (!attributeNamePattern.test(name) || typeof raw !== 'string' || !attributeValuePattern.test(raw)) {
      throw new FleetgateError('ATTRIBUTE_INVALID', { detail: { name: name.slice(0, 64) } });
    }
    result[name] = raw;
  }
  return Object.freeze(result);
}
