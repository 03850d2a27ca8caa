import { type Static, Type } from 'typebox';
import type { RotationCampaignState } from '../core/index.ts';
import { bearer, LimitParam, List, Page, problems } from './common.ts';
import { Answer, DateTime, Nullable, StringEnum } from './json-schema.ts';

/**
 * Rotation campaigns (README "Rotation campaigns"; routes in provisioning/api/rotation-routes.ts). Values
 * are written here rather than imported from core, because the web console bundles this file (see
 * contract/constants.ts); the compiler checks they agree.
 */

export const rotationStates = ['running', 'paused', 'completed', 'closed'] as const satisfies readonly RotationCampaignState[];
export const rotationRate = { min: 1, max: 1000, default: 50 } as const;
export const rotationActions = ['pause', 'resume', 'close'] as const;
export const rotationOutcomes = ['pending', 'offline', 'notified', 'renewed', 'failed'] as const;

// ---- answers -------------------------------------------------------------------------------------------

export const RotationProgress = Answer({
  selected: Type.Integer({ description: 'devices in the campaign' }),
  pending: Type.Integer({ description: 'not reached by the scheduler yet (paused, or waiting for the rate)' }),
  notified: Type.Integer({ description: 'the rotate command was written to their live session' }),
  renewed: Type.Integer({ description: 'got a certificate since the campaign started, by any transport' }),
  failed: Type.Integer({ description: 'notified, then a renewal was refused, and not renewed since' }),
  offline: Type.Integer({ description: 'reached without a live session: the command waits for their next connection' }),
});
export type RotationProgress = Static<typeof RotationProgress>;

export const RotationCampaign = Answer({
  id: Type.String(),
  selector: Type.String({ description: 'as written, e.g. template=sensor (an id list is summarised)' }),
  ratePerSecond: Type.Integer(),
  state: StringEnum(rotationStates),
  createdBy: Type.String(),
  createdAt: DateTime(),
  updatedAt: DateTime(),
  endedAt: Nullable(DateTime(), { description: 'when it completed or was closed' }),
  progress: RotationProgress,
});
export type RotationCampaign = Static<typeof RotationCampaign>;

export const RotationCampaignList = List(RotationCampaign);
export type RotationCampaignList = Static<typeof RotationCampaignList>;

export const RotationDevice = Answer({
  deviceId: Type.String(),
  outcome: StringEnum(rotationOutcomes, { description: 'where the device stands, as the progress counts it' }),
  dispatchedAt: Nullable(DateTime(), { description: 'when the scheduler reached it' }),
  notifiedAt: Nullable(DateTime(), { description: 'when the command was written to its live session' }),
});
export type RotationDevice = Static<typeof RotationDevice>;
export const RotationDevicePage = Page(RotationDevice);
export type RotationDevicePage = Static<typeof RotationDevicePage>;

// ---- requests ------------------------------------------------------------------------------------------

export const StartRotation = Type.Object(
  {
    select: Type.String({ maxLength: 200, description: 'template=NAME, ca=CA_ID, expires-within=30d (or 12h), or ids (with `ids`)' }),
    ids: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { minItems: 1, maxItems: 100_000, description: 'the device ids, with select=ids' })),
    ratePerSecond: Type.Optional(Type.Integer({ minimum: rotationRate.min, maximum: rotationRate.max, description: `devices told per second, default ${rotationRate.default}` })),
  },
  { additionalProperties: false },
);
export type StartRotation = Static<typeof StartRotation>;

const CampaignParams = Type.Object({ id: Type.String({ maxLength: 128 }) }, { additionalProperties: false });

export const RotationDeviceQuery = Type.Object(
  {
    outcome: Type.Optional(StringEnum(rotationOutcomes)),
    after: Type.Optional(Type.String({ maxLength: 128, description: 'device ids sorting after this one (the `next` of the previous page)' })),
    limit: Type.Optional(LimitParam),
  },
  { additionalProperties: false },
);
export type RotationDeviceQuery = Static<typeof RotationDeviceQuery>;

// ---- routes --------------------------------------------------------------------------------------------

const rotations = { tags: ['rotations'], security: bearer };

export const rotationSchemas = {
  start: {
    ...rotations,
    summary: 'Start a rotation campaign: tell the selected devices to renew now, at a bounded rate',
    body: StartRotation,
    response: { 201: RotationCampaign, ...problems },
  },
  list: { ...rotations, summary: 'Rotation campaigns with their progress, newest first', response: { 200: RotationCampaignList, ...problems } },
  get: { ...rotations, summary: 'One rotation campaign and its progress', params: CampaignParams, response: { 200: RotationCampaign, ...problems } },
  devices: {
    ...rotations,
    summary: "A campaign's devices, by id, with where each stands (e.g. ?outcome=failed)",
    params: CampaignParams,
    querystring: RotationDeviceQuery,
    response: { 200: RotationDevicePage, ...problems },
  },
  pause: { ...rotations, summary: 'Pause a running campaign: nobody more is told until it is resumed', params: CampaignParams, response: { 200: RotationCampaign, ...problems } },
  resume: { ...rotations, summary: 'Resume a paused campaign', params: CampaignParams, response: { 200: RotationCampaign, ...problems } },
  close: { ...rotations, summary: 'Close a campaign for good (devices already told may still renew)', params: CampaignParams, response: { 200: RotationCampaign, ...problems } },
};
