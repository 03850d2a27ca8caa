import { assertDeviceId } from './device-id.ts';
import { type ErrorCode, FleetgateError } from './errors.ts';

/**
 * Rotation campaigns (README "Rotation campaigns"): which devices a campaign tells to renew, the states a
 * campaign moves through, and the payload of the command on `$fleetgate/certs/{id}/rotate`. Pure rules; the
 * registry stores campaigns, provisioning schedules them, brokers deliver the command.
 */

/** Which devices a campaign selects, as the operator wrote it (`--select`). */
export type RotationSelector =
  | { readonly kind: 'template'; readonly template: string }
  /** The devices whose active certificate was issued by this CA (CA rollover: move them off the old one). */
  | { readonly kind: 'ca'; readonly caId: string }
  /** The devices whose newest active certificate expires within this many days (already expired ones too). */
  | { readonly kind: 'expires-within'; readonly days: number }
  | { readonly kind: 'ids'; readonly ids: readonly string[] };

/** At most this many ids in one `ids=` selection (one request body). */
export const maxRotationIds = 100_000;
/** Notifications per second a campaign may ask for. */
export const rotationRateLimits = { min: 1, max: 1000, default: 50 } as const;

const selectorHelp = 'use template=NAME, ca=CA_ID, expires-within=30d or ids=@FILE';

function invalidSelector(message: string, detail: Record<string, unknown> = {}): FleetgateError {
  return new FleetgateError('ROTATION_SELECTOR_INVALID', { message: `${message}; ${selectorHelp}.`, detail });
}

/**
 * Reads `template=T`, `ca=ID`, `expires-within=30d` (days; `h` for hours is accepted and rounded up to
 * days' fraction) or `ids` with the ids given separately (the CLI reads `ids=@file` and sends the list).
 */
export function parseRotationSelector(text: string, ids?: readonly string[]): RotationSelector {
  const at = text.indexOf('=');
  const kind = at < 0 ? text : text.slice(0, at);
  const value = at < 0 ? '' : text.slice(at + 1);
  if (kind !== 'ids' && ids !== undefined) throw invalidSelector(`ids are only read with the ids selector, not ${kind}`);
  switch (kind) {
    case 'template':
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)) throw invalidSelector(`template=${value.slice(0, 64)} is not a template name`);
      return { kind, template: value };
    case 'ca':
      if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(value)) throw invalidSelector(`ca=${value.slice(0, 64)} is not a CA id`);
      return { kind, caId: value };
    case 'expires-within': {
      const match = /^([0-9]{1,5})(d|h)$/.exec(value);
      const amount = match ? Number(match[1]) : Number.NaN;
      if (!match || amount <= 0) throw invalidSelector(`expires-within=${value.slice(0, 32)} is not a duration such as 30d or 12h`);
      return { kind, days: match[2] === 'h' ? amount / 24 : amount };
    }
    case 'ids': {
      if (value !== '' && value !== '@') throw invalidSelector('ids are sent as a list (the CLI reads them from ids=@FILE, one per line)');
      const list = ids ?? [];
      if (list.length === 0) throw invalidSelector('ids: the list of device ids is empty');
      if (list.length > maxRotationIds) throw invalidSelector(`ids: at most ${maxRotationIds} ids per campaign, got ${list.length}`);
      for (const id of list) assertDeviceId(id);
      return { kind, ids: [...new Set(list)] };
    }
    default:
      throw invalidSelector(`${kind.slice(0, 32) || '(empty)'} is not a selector`);
  }
}

/** The selector as the operator would write it (ids are summarised). */
export function formatRotationSelector(selector: RotationSelector): string {
  switch (selector.kind) {
    case 'template':
      return `template=${selector.template}`;
    case 'ca':
      return `ca=${selector.caId}`;
    case 'expires-within':
      return Number.isInteger(selector.days) ? `expires-within=${selector.days}d` : `expires-within=${Math.round(selector.days * 24)}h`;
    case 'ids':
      return `ids (${selector.ids.length})`;
  }
}

/** Reads `--rate 50/s` (or `50`): notifications per second. */
export function parseRotationRate(text: string): number {
  const match = /^([0-9]{1,4})(\/s)?$/.exec(text.trim());
  const rate = match ? Number(match[1]) : Number.NaN;
  if (!(rate >= rotationRateLimits.min && rate <= rotationRateLimits.max)) {
    throw new FleetgateError('REQUEST_INVALID', { message: `The rate must be ${rotationRateLimits.min} to ${rotationRateLimits.max} devices per second, written like 50/s.` });
  }
  return rate;
}

/**
 * `running`: the scheduler notifies devices at the campaign's rate; `paused`: nobody more is notified
 * (devices already told may still renew, and count); `completed`: every selected device renewed;
 * `closed`: the operator ended it. The last two are final.
 */
export const rotationCampaignStates = ['running', 'paused', 'completed', 'closed'] as const;
export type RotationCampaignState = (typeof rotationCampaignStates)[number];
export type RotationCampaignAction = 'pause' | 'resume' | 'close';

/** The state an operator's action leads to, or the refusal: only a running campaign pauses, only a paused one resumes. */
export function rotationCampaignTransition(from: RotationCampaignState, action: RotationCampaignAction): { to: RotationCampaignState } | { code: ErrorCode; detail: Record<string, unknown> } {
  const refused = { code: 'ROTATION_CAMPAIGN_STATE' as const, detail: { state: from, action } };
  if (from === 'completed' || from === 'closed') return refused;
  if (action === 'pause') return from === 'running' ? { to: 'paused' } : refused;
  if (action === 'resume') return from === 'paused' ? { to: 'running' } : refused;
  return { to: 'closed' };
}

/**
 * Where each selected device stands. `pending`: not reached by the scheduler yet; `offline`: reached, but no
 * live session subscribed to its rotate topic took the command (it gets it when it next subscribes);
 * `notified`: the command was written to its live session. `renewed` and `failed` are derived from the
 * registry, whatever the transport: a certificate issued to the device after the campaign started; a
 * renewal refused after it was notified (and no renewal since).
 */
export interface RotationProgress {
  readonly selected: number;
  readonly pending: number;
  readonly notified: number;
  readonly renewed: number;
  readonly failed: number;
  readonly offline: number;
}

/** The command a device receives on `$fleetgate/certs/{id}/rotate`: renew now, as on the normal schedule. */
export interface RotationCommand {
  readonly campaignId: string;
  /** ISO 8601: when the gateway sent it. */
  readonly requestedAt: string;
}
