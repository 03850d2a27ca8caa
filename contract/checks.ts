import { type Static, Type } from 'typebox';
import { fleetCheckIds } from '../core/index.ts';
import { bearer, problems } from './common.ts';
import { Answer, DateTime, Nullable, StringEnum } from './json-schema.ts';

/** Fleet health checks (README "Fleet health checks"; rules in core/fleet-checks.ts, route in provisioning/api/check-routes.ts). */

export const checkStatuses = ['pass', 'warn', 'fail'] as const;

export const CheckFinding = Answer({
  subject: Type.String({ description: 'what it is about: a CA, a template, a device id, a claim, a policy' }),
  detail: Type.String(),
});
export type CheckFinding = Static<typeof CheckFinding>;

export const CheckResult = Answer({
  id: StringEnum(fleetCheckIds),
  title: Type.String(),
  severity: StringEnum(['critical', 'warning']),
  status: StringEnum(checkStatuses, { description: '`fail` makes `fleetgate check` exit 1; `warn` does not' }),
  count: Type.Integer({ description: 'how many things are affected, all of them (findings lists at most 20)' }),
  findings: Type.Array(CheckFinding),
  nextStep: Nullable(Type.String(), { description: 'what to do next; null when the check passes' }),
});
export type CheckResult = Static<typeof CheckResult>;

export const CheckReport = Answer({
  checkedAt: DateTime({ description: 'when the facts were gathered (answers are cached for a few seconds)' }),
  status: StringEnum(checkStatuses, { description: 'the worst status of the checks listed' }),
  items: Type.Array(CheckResult),
});
export type CheckReport = Static<typeof CheckReport>;

export const CheckQuery = Type.Object(
  {
    id: Type.Optional(StringEnum(fleetCheckIds, { description: 'only this check' })),
    fresh: Type.Optional(StringEnum(['true', 'false'], { description: '`true`: gather the facts now instead of answering from the last few seconds' })),
  },
  { additionalProperties: false },
);
export type CheckQuery = Static<typeof CheckQuery>;

export const checkSchemas = {
  listChecks: {
    tags: ['fleet'],
    summary: 'Fleet health checks: expiring CAs and certificates, sessions of revoked identities, cloned credentials, takeovers, permissive claims and policies, audit verification',
    security: bearer,
    querystring: CheckQuery,
    response: { 200: CheckReport, ...problems },
  },
};
