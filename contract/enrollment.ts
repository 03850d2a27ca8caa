import { type Static, Type } from 'typebox';
import { bearer } from './common.ts';
import { Answer, DateTime, StringMap } from './json-schema.ts';

/**
 * Enrollment and renewal over HTTPS (routes in provisioning/api/enrollment-routes.ts) and the relay a
 * `fleetgate broker` uses for requests devices publish over MQTT (provisioning/api/relay-routes.ts).
 */

/** A new certificate: what core's CertificateReply (core/enrollment-protocol.ts) carries on every transport. */
export const IssuedCertificate = Answer({
  deviceId: Type.String(),
  serial: Type.String(),
  certificate: Type.String(),
  chain: Type.String(),
  notAfter: DateTime(),
  serverTime: DateTime(),
});
export type IssuedCertificate = Static<typeof IssuedCertificate>;

export const EnrollBody = Type.Object(
  { csr: Type.String({ maxLength: 16384 }), serial: Type.Optional(Type.String({ maxLength: 128 })), attributes: Type.Optional(StringMap()) },
  { additionalProperties: false },
);
export type EnrollBody = Static<typeof EnrollBody>;

export const RenewBody = Type.Object({ csr: Type.String({ maxLength: 16384 }) }, { additionalProperties: false });
export type RenewBody = Static<typeof RenewBody>;

const RelayedEnroll = Type.Object(
  {
    kind: Type.Unsafe<'enroll'>({ const: 'enroll' }),
    certificate: Type.String({ minLength: 1, maxLength: 16_384, contentEncoding: 'base64', description: "the claim session's certificate (DER)" }),
    serial: Type.String({ minLength: 1, maxLength: 128, description: 'the client id the claim session was admitted with' }),
    payload: Type.String({ maxLength: 44_000, contentEncoding: 'base64' }),
  },
  { additionalProperties: false },
);
const RelayedRenew = Type.Object(
  {
    kind: Type.Unsafe<'renew'>({ const: 'renew' }),
    certificate: Type.String({ minLength: 1, maxLength: 16_384, contentEncoding: 'base64', description: "the device session's certificate (DER)" }),
    payload: Type.String({ maxLength: 44_000, contentEncoding: 'base64' }),
  },
  { additionalProperties: false },
);
/** Exactly one of the two (`oneOf`, as published; TypeBox's Union would write `anyOf`). */
export const RelayedRequest = Type.Unsafe<Static<typeof RelayedEnroll> | Static<typeof RelayedRenew>>({ oneOf: [RelayedEnroll, RelayedRenew] });
export type RelayedRequest = Static<typeof RelayedRequest>;

export const enrollmentSchemas = {
  enroll: { tags: ['enrollment'], summary: 'Enroll a device with a claim certificate (TLS client certificate)', body: EnrollBody, response: { 201: IssuedCertificate } },
  renew: { tags: ['enrollment'], summary: 'Renew the device certificate presented as TLS client certificate (new key or same key; an expired one once, within its template\'s renewAfterExpiryDays)', body: RenewBody, response: { 201: IssuedCertificate } },
  relay: {
    tags: ['enrollment'],
    summary: 'Relay an MQTT enrollment or renewal request from a broker process (broker token)',
    security: bearer,
    body: RelayedRequest,
  },
};
