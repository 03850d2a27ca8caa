import { FleetgateError } from '../errors.ts';

/**
 * CA rollover without downtime (README "Rotating certificates and CAs"). Each role (root, device, claim)
 * rotates in three stages, one rotation per role at a time:
 * - prepare: a new CA is made (`next`) and trusted at once, beside the active one;
 * - activate: the new CA issues everything from now on (`active`); the old one is `retiring`, still trusted;
 * - retire: the old CA is no longer trusted (`retired`), refused while it still vouches for anything.
 * A root rotation also makes cross-certificates (each root signed by the other), retired with the old root.
 */
export type CaRole = 'root' | 'device' | 'claim' | 'cross';
export type CaState = 'next' | 'active' | 'retiring' | 'retired';
export type RotatableRole = Exclude<CaRole, 'cross'>;
export type RotationStage = 'prepare' | 'activate' | 'retire';

export const rotatableRoles: readonly RotatableRole[] = ['root', 'device', 'claim'];
export const rotationStages: readonly RotationStage[] = ['prepare', 'activate', 'retire'];

/** The fields of a CA row the rules read. */
export interface CaView {
  readonly id: string;
  readonly role: CaRole;
  readonly state: CaState;
  readonly issuerId: string | null;
  readonly crossOf: string | null;
}

export type CaTransition = { readonly id: string; readonly from: CaState; readonly to: CaState };

export type RotationPlan =
  /** Make a new CA of `role`, signed by `parent` (the active root; for a root, the root to cross-sign with). */
  | { readonly stage: 'prepare'; readonly role: RotatableRole; readonly parent: CaView }
  | { readonly stage: 'activate'; readonly role: RotatableRole; readonly next: CaView; readonly previous: CaView; readonly transitions: readonly CaTransition[] }
  | { readonly stage: 'retire'; readonly role: RotatableRole; readonly retiring: CaView; readonly transitions: readonly CaTransition[] };

/** CAs the gateway trusts: all but the retired. */
export const isTrusted = (ca: Pick<CaView, 'state'>): boolean => ca.state !== 'retired';

/** The active CA of a role; every installation has exactly one per role (a unique index guards it). */
export function activeCa<T extends CaView>(cas: readonly T[], role: RotatableRole): T {
  const active = cas.find((ca) => ca.role === role && ca.state === 'active');
  if (active === undefined) throw new FleetgateError('PKI_CA_MISSING', { detail: { role } });
  return active;
}

/** What a CA still vouches for (registry CaUsage). */
export interface CaUsageCounts {
  readonly certificates: number;
  readonly claims: number;
  readonly authorities: number;
}

/** Retiring a CA is refused while it vouches for anything; the message says what and how to move it. */
export function caInUse(caId: string, usage: CaUsageCounts): FleetgateError | undefined {
  if (usage.certificates + usage.claims + usage.authorities === 0) return undefined;
  const steps = [
    ...(usage.certificates > 0 ? [`${usage.certificates} unexpired device or service certificate(s): move them with \`fleetgate rotate start --select ca=${caId}\``] : []),
    ...(usage.claims > 0 ? [`${usage.claims} usable claim(s): give factories new claims (\`fleetgate claim create\`) and revoke these, or let them expire`] : []),
    ...(usage.authorities > 0 ? [`${usage.authorities} CA(s) it signed that are not retired: rotate and retire those first (\`fleetgate ca rotate device|claim\`)`] : []),
  ];
  return new FleetgateError('PKI_CA_IN_USE', { message: `CA ${caId} still vouches for ${steps.join('; ')}. Then retire it again.`, detail: { caId, ...usage } });
}

/** The one decision of what a rotation stage may do, given the CAs as they are. */
export function planRotation(cas: readonly CaView[], role: RotatableRole, stage: RotationStage): RotationPlan {
  const ofRole = cas.filter((ca) => ca.role === role);
  const next = ofRole.find((ca) => ca.state === 'next');
  const retiring = ofRole.find((ca) => ca.state === 'retiring');
  const active = activeCa(cas, role);
  const refuse = (reason: string): never => {
    throw new FleetgateError('PKI_CA_ROTATION_STAGE', { detail: { role, stage, reason } });
  };
  switch (stage) {
    case 'prepare':
      if (next !== undefined) return refuse(`CA ${next.id} is already prepared: activate it next`);
      if (retiring !== undefined) return refuse(`CA ${retiring.id} is still retiring: retire it first`);
      return { stage, role, parent: role === 'root' ? active : activeCa(cas, 'root') };
    case 'activate':
      if (next === undefined) return refuse('no CA is prepared: run --stage prepare first');
      if (retiring !== undefined) return refuse(`CA ${retiring.id} is still retiring: retire it first`);
      return {
        stage,
        role,
        next,
        previous: active,
        transitions: [
          { id: active.id, from: 'active', to: 'retiring' },
          { id: next.id, from: 'next', to: 'active' },
        ],
      };
    case 'retire': {
      if (retiring === undefined) return refuse('no CA is retiring: activate a prepared CA first');
      const crosses = role === 'root' ? cas.filter((ca) => ca.role === 'cross' && isTrusted(ca) && (ca.crossOf === retiring.id || ca.issuerId === retiring.id)) : [];
      return {
        stage,
        role,
        retiring,
        transitions: [{ id: retiring.id, from: 'retiring', to: 'retired' }, ...crosses.map((ca) => ({ id: ca.id, from: ca.state, to: 'retired' as const }))],
      };
    }
  }
}
