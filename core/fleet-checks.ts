import type { CaRole } from './pki/ca-rotation.ts';
import { type PolicyDocument } from './policy.ts';
import { filterCovers, isValidTopicFilter } from './topic.ts';

/**
 * Fleet health checks (README "Fleet health checks"): pure rules over facts a collector gathered from the
 * registry, the session list, the CAs and the audit trail (provisioning/fleet-check-collector.ts). The API
 * (`GET /v1/checks`), the CLI (`fleetgate check`), the console and the Prometheus gauges all show what these
 * rules answer, so a check means the same thing everywhere.
 */

export const fleetCheckIds = [
  'ca-expiry',
  'device-certificate-expiry',
  'inactive-identity-session',
  'cloned-credential',
  'client-id-takeover',
  'renewal-overdue',
  'permissive-claim',
  'permissive-policy',
  'manufacturer-ca-expiry',
  'audit-chain-verification',
] as const;
export type FleetCheckId = (typeof fleetCheckIds)[number];

/** `fail` makes `fleetgate check` exit 1; `warn` does not (it is reported, and counted in Prometheus). */
export type FleetCheckStatus = 'pass' | 'warn' | 'fail';
export type FleetCheckSeverity = 'critical' | 'warning';

export interface FleetCheckFinding {
  /** What the finding is about: a CA, a template, a device id, a claim, a policy. */
  readonly subject: string;
  readonly detail: string;
}

export interface FleetCheckResult {
  readonly id: FleetCheckId;
  readonly title: string;
  /** How bad a finding of this check is; the status says whether there is one. */
  readonly severity: FleetCheckSeverity;
  readonly status: FleetCheckStatus;
  /** How many things are affected (devices, CAs, claims, …), all of them, not only the findings listed. */
  readonly count: number;
  /** At most `maxFindings` of them. */
  readonly findings: readonly FleetCheckFinding[];
  /** What the operator should do next; null when the check passes. */
  readonly nextStep: string | null;
}

export interface FleetCheckSettings {
  /** Root, device and claim CAs expiring within this many days are reported (fail within `caCriticalDays`). */
  readonly caExpiryDays: number;
  readonly caCriticalDays: number;
  /** Device certificates expiring within this many days. */
  readonly deviceExpiryDays: number;
  readonly manufacturerCaExpiryDays: number;
  /** One certificate connected from two sessions this close together is a cloned credential. */
  readonly clonedWindowSeconds: number;
  /** More than `takeoverLimit` takeovers of one client id within `takeoverWindowSeconds`. */
  readonly takeoverLimit: number;
  readonly takeoverWindowSeconds: number;
  /** The audit chain must have been verified within this many hours. */
  readonly auditVerifyMaxAgeHours: number;
  /** A claim valid for longer than this from now counts as having no expiry. */
  readonly claimMaxLifetimeDays: number;
  /** How far back takeovers count as evidence of a cloned credential. */
  readonly clonedLookbackSeconds: number;
  /** Findings listed per check (the count covers all). */
  readonly maxFindings: number;
}

export const defaultFleetCheckSettings: FleetCheckSettings = Object.freeze({
  caExpiryDays: 180,
  caCriticalDays: 30,
  deviceExpiryDays: 30,
  manufacturerCaExpiryDays: 180,
  clonedWindowSeconds: 60,
  clonedLookbackSeconds: 3600,
  takeoverLimit: 5,
  takeoverWindowSeconds: 600,
  auditVerifyMaxAgeHours: 24,
  claimMaxLifetimeDays: 365,
  maxFindings: 20,
});

/** The registry's CA roles (root, device, claim, cross-certificate) and the manufacturer CAs of birth certificates. */
export type CheckedCaRole = CaRole | 'manufacturer';

export interface CaFact {
  readonly id: string;
  readonly role: CheckedCaRole;
  readonly state: string;
  readonly subject: string;
  readonly notAfter: Date;
}

/** Active device certificates of one template that share a condition (expiring soon, renewal overdue). */
export interface CertificateGroupFact {
  readonly template: string;
  readonly count: number;
  /** A few of the device ids (the collector caps them). */
  readonly sample: readonly string[];
}

/** A live session of an identity that is not active any more. */
export interface InactiveSessionFact {
  readonly deviceId: string;
  readonly status: string;
  readonly certificateSerial: string;
  readonly broker?: string;
}

/** A device session admitted while another session with the same client id was open (broker `mqtt.takeover`). */
export interface TakeoverFact {
  readonly clientId: string;
  readonly at: Date;
  readonly certificateSerial: string;
  readonly remoteAddress?: string;
  readonly previous: { readonly certificateSerial: string; readonly connectedAt: Date; readonly remoteAddress?: string };
}

export interface ClaimFact {
  readonly id: string;
  /** A claim certificate we issued, or a manufacturer CA whose birth certificates act as claims. */
  readonly kind: 'claim-certificate' | 'manufacturer-ca';
  /** Whether its template enrolls only allow-listed serials. */
  readonly allowlisted: boolean;
  readonly template: string;
  readonly maxUses: number | null;
  readonly uses: number;
  readonly expiresAt: Date;
  readonly status: string;
}

/** A policy and who gets it: templates (which enroll devices) and device-level overrides. Service-only policies are not listed. */
export interface PolicyUseFact {
  readonly name: string;
  readonly document: PolicyDocument;
  readonly templates: readonly string[];
  readonly overrides: number;
}

export interface AuditVerificationFact {
  readonly at: Date;
  readonly ok: boolean;
  readonly firstBrokenId?: number;
}

export interface FleetFacts {
  readonly now: Date;
  readonly cas: readonly CaFact[];
  readonly expiringCertificates: readonly CertificateGroupFact[];
  readonly renewalOverdue: readonly CertificateGroupFact[];
  readonly inactiveSessions: readonly InactiveSessionFact[];
  readonly takeovers: readonly TakeoverFact[];
  readonly claims: readonly ClaimFact[];
  readonly policies: readonly PolicyUseFact[];
  /** The newest `audit.verify` entry, whatever its age; undefined if the chain was never verified. */
  readonly lastAuditVerification: AuditVerificationFact | undefined;
}

const dayMs = 86_400_000;

/** Runs every rule (or those in `only`) over the facts. */
export function evaluateFleetChecks(facts: FleetFacts, settings: FleetCheckSettings = defaultFleetCheckSettings, only?: readonly FleetCheckId[]): FleetCheckResult[] {
  const rules: Record<FleetCheckId, () => FleetCheckResult> = {
    'ca-expiry': () => caExpiry(facts, settings, false),
    'device-certificate-expiry': () => deviceCertificateExpiry(facts, settings),
    'inactive-identity-session': () => inactiveIdentitySession(facts, settings),
    'cloned-credential': () => clonedCredential(facts, settings),
    'client-id-takeover': () => clientIdTakeover(facts, settings),
    'renewal-overdue': () => renewalOverdue(facts, settings),
    'permissive-claim': () => permissiveClaim(facts, settings),
    'permissive-policy': () => permissivePolicy(facts, settings),
    'manufacturer-ca-expiry': () => caExpiry(facts, settings, true),
    'audit-chain-verification': () => auditChainVerification(facts, settings),
  };
  return (only ?? fleetCheckIds).map((id) => rules[id]());
}

/** Whether `fleetgate check` should exit 1: any check failed (warnings do not). */
export function anyCheckFailed(results: readonly FleetCheckResult[]): boolean {
  return results.some((result) => result.status === 'fail');
}

function result(
  id: FleetCheckId,
  title: string,
  severity: FleetCheckSeverity,
  settings: FleetCheckSettings,
  outcome: { count: number; findings: readonly FleetCheckFinding[]; nextStep: string; status?: FleetCheckStatus },
): FleetCheckResult {
  const status = outcome.count === 0 ? 'pass' : (outcome.status ?? (severity === 'critical' ? 'fail' : 'warn'));
  return { id, title, severity, status, count: outcome.count, findings: outcome.findings.slice(0, settings.maxFindings), nextStep: status === 'pass' ? null : outcome.nextStep };
}

const days = (from: Date, to: Date) => Math.floor((to.getTime() - from.getTime()) / dayMs);
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const sampleText = (group: CertificateGroupFact) => (group.sample.length === 0 ? '' : `: ${group.sample.join(', ')}${group.count > group.sample.length ? ', …' : ''}`);

function caExpiry(facts: FleetFacts, settings: FleetCheckSettings, manufacturer: boolean): FleetCheckResult {
  const window = manufacturer ? settings.manufacturerCaExpiryDays : settings.caExpiryDays;
  const horizon = facts.now.getTime() + window * dayMs;
  // A retired CA issues and anchors nothing any more: its expiry is expected.
  const expiring = facts.cas
    .filter((ca) => (ca.role === 'manufacturer') === manufacturer && ca.state !== 'retired' && ca.notAfter.getTime() <= horizon)
    .sort((a, b) => a.notAfter.getTime() - b.notAfter.getTime());
  const critical = expiring.some((ca) => ca.notAfter.getTime() <= facts.now.getTime() + settings.caCriticalDays * dayMs);
  const findings = expiring.map((ca) => {
    const left = days(facts.now, ca.notAfter);
    return { subject: `${ca.role} CA ${ca.id}`, detail: `${ca.subject} (${ca.state}) ${left < 0 ? `expired ${-left} days ago` : `expires in ${left} days`}, on ${ca.notAfter.toISOString()}` };
  });
  if (manufacturer) {
    return result('manufacturer-ca-expiry', `Manufacturer CAs expiring within ${window} days`, 'warning', settings, {
      count: expiring.length,
      findings,
      status: critical ? 'fail' : 'warn',
      nextStep:
        'Devices with birth certificates from these CAs cannot enroll after the CA expires: get the new CA certificate from the manufacturer and register it (`fleetgate claim register-issuer`) before the old one expires.',
    });
  }
  return result('ca-expiry', `CA certificates expiring within ${window} days`, 'warning', settings, {
    count: expiring.length,
    findings,
    status: critical ? 'fail' : 'warn',
    nextStep: 'Rotate these CAs now (`fleetgate ca rotate root|device|claim --stage prepare`, then activate and retire), moving devices with a rotation campaign: README "Rotating certificates and CAs".',
  });
}

function deviceCertificateExpiry(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const groups = [...facts.expiringCertificates].sort((a, b) => b.count - a.count);
  const count = groups.reduce((sum, group) => sum + group.count, 0);
  return result('device-certificate-expiry', `Device certificates expiring within ${settings.deviceExpiryDays} days`, 'warning', settings, {
    count,
    findings: groups.map((group) => ({ subject: `template ${group.template}`, detail: `${plural(group.count, 'device')} not yet renewed${sampleText(group)}` })),
    nextStep: `Start a rotation campaign for these ${plural(count, 'device')}: \`fleetgate rotate start --select 'expires-within=${settings.deviceExpiryDays}d'\` (or per template, \`--select 'template=NAME'\`).`,
  });
}

function inactiveIdentitySession(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const sessions = facts.inactiveSessions;
  return result('inactive-identity-session', 'Revoked or suspended identities with a live session', 'critical', settings, {
    count: sessions.length,
    findings: sessions.map((s) => ({ subject: s.deviceId, detail: `${s.status}, still connected with certificate ${s.certificateSerial}${s.broker ? ` on broker ${s.broker}` : ''}` })),
    nextStep:
      'The gateway should have closed these sessions when the status changed: suspend or revoke each one again to re-send the kick (`fleetgate device suspend|revoke ID`), then check that every broker receives revocation events (Redis reachable, `fleetgate session list`).',
  });
}

function clonedCredential(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const windowMs = settings.clonedWindowSeconds * 1000;
  const clones = new Map<string, { clientId: string; detail: string }>();
  const since = facts.now.getTime() - settings.clonedLookbackSeconds * 1000;
  for (const t of facts.takeovers) {
    if (t.at.getTime() < since) continue;
    if (t.certificateSerial !== t.previous.certificateSerial) continue;
    const gap = t.at.getTime() - t.previous.connectedAt.getTime();
    if (gap < 0 || gap > windowMs) continue;
    const remotes = [t.previous.remoteAddress, t.remoteAddress].filter((r) => r !== undefined).join(' and ');
    clones.set(t.certificateSerial, { clientId: t.clientId, detail: `connected twice ${Math.round(gap / 1000)} s apart${remotes ? ` from ${remotes}` : ''} at ${t.at.toISOString()}` });
  }
  return result('cloned-credential', `One certificate used by two sessions within ${settings.clonedWindowSeconds} s`, 'critical', settings, {
    count: clones.size,
    findings: [...clones].map(([serial, clone]) => ({ subject: clone.clientId, detail: `certificate ${serial} ${clone.detail}` })),
    nextStep:
      'Treat the private key as copied: revoke the device with reason keyCompromise (`fleetgate device revoke ID --reason keyCompromise`), find the second device from the addresses in the audit trail (`fleetgate audit --action mqtt.takeover`), and re-provision the real one.',
  });
}

function clientIdTakeover(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const since = facts.now.getTime() - settings.takeoverWindowSeconds * 1000;
  const perId = new Map<string, TakeoverFact[]>();
  for (const t of facts.takeovers) if (t.at.getTime() >= since) perId.set(t.clientId, [...(perId.get(t.clientId) ?? []), t]);
  const fighting = [...perId].filter(([, list]) => list.length > settings.takeoverLimit).sort((a, b) => b[1].length - a[1].length);
  const minutes = Math.round(settings.takeoverWindowSeconds / 60);
  return result('client-id-takeover', `Client ids taken over more than ${settings.takeoverLimit} times in ${minutes} minutes`, 'critical', settings, {
    count: fighting.length,
    findings: fighting.map(([clientId, list]) => {
      const remotes = new Set(list.flatMap((t) => [t.remoteAddress, t.previous.remoteAddress]).filter((r) => r !== undefined));
      const serials = new Set(list.flatMap((t) => [t.certificateSerial, t.previous.certificateSerial]));
      return { subject: clientId, detail: `${list.length} takeovers in ${minutes} min, ${plural(serials.size, 'certificate')}, from ${[...remotes].slice(0, 4).join(', ') || 'unknown addresses'}` };
    }),
    nextStep:
      'Two connections are fighting over each of these ids (a cloned device, or a firmware reconnect loop): look at the addresses in `fleetgate audit --action mqtt.takeover --device ID`, suspend the id until it is resolved (`fleetgate device suspend ID`), and re-provision the clone.',
  });
}

function renewalOverdue(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const groups = [...facts.renewalOverdue].sort((a, b) => b.count - a.count);
  const count = groups.reduce((sum, group) => sum + group.count, 0);
  return result('renewal-overdue', 'Devices past two thirds of their certificate lifetime that never renewed', 'warning', settings, {
    count,
    findings: groups.map((group) => ({ subject: `template ${group.template}`, detail: `${plural(group.count, 'device')}${sampleText(group)}` })),
    nextStep: `Start a rotation campaign for these ${plural(count, 'device')} (\`fleetgate rotate start --select 'template=NAME'\`) and check their firmware renews on its own (README "Enrollment and renewal").`,
  });
}

function permissiveClaim(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const horizon = facts.now.getTime() + settings.claimMaxLifetimeDays * dayMs;
  const open = facts.claims
    .filter((c) => c.status === 'active' && c.expiresAt.getTime() > facts.now.getTime())
    .map((c) => {
      // A manufacturer CA lives as long as its certificate (manufacturer-ca-expiry watches that), and with an
      // allow-list its unlimited uses are bounded by the serials listed.
      const unlimited = c.maxUses === null && !(c.kind === 'manufacturer-ca' && c.allowlisted);
      const endless = c.kind === 'claim-certificate' && c.expiresAt.getTime() > horizon;
      const reasons = [...(unlimited ? ['unlimited uses'] : []), ...(endless ? [`no practical expiry (${c.expiresAt.toISOString().slice(0, 10)})`] : [])];
      return { claim: c, reasons };
    })
    .filter((c) => c.reasons.length > 0);
  return result('permissive-claim', `Claims with unlimited uses or valid for more than ${settings.claimMaxLifetimeDays} days`, 'warning', settings, {
    count: open.length,
    findings: open.map(({ claim, reasons }) => ({ subject: `claim ${claim.id}`, detail: `template ${claim.template}: ${reasons.join(', ')}; used ${claim.uses} times` })),
    nextStep:
      'A leaked claim with no limit enrolls devices without end: revoke it once its batch is done (`fleetgate claim revoke ID`), and issue new claims with `--max-uses` and a short `--expires` for each batch (`fleetgate claim create`).',
  });
}

/** The device's own namespace, resolved for a probe identity: `devices/${device.id}/#`. */
const probeId = 'fleetgate-check-probe';
const ownNamespace = `devices/${probeId}/#`;

/**
 * The allow statements of a policy that grant a wildcard filter reaching outside `devices/${device.id}/#`
 * (or `#` itself). Each variable is resolved to a value of its own, so `devices/${device.attributes.x}/#`
 * counts as wide: the attribute may name another device.
 */
export function permissiveGrants(document: PolicyDocument): { statementIndex: number; sid?: string; topic: string }[] {
  const wide: { statementIndex: number; sid?: string; topic: string }[] = [];
  document.statements.forEach((statement, statementIndex) => {
    if (statement.effect !== 'allow') return;
    for (const topic of statement.topics) {
      const resolved = topic.replace(/\$\{([^}]*)\}/g, (_match, name: string) => (name === 'device.id' ? probeId : `probe-${name.replace(/[^A-Za-z0-9]/g, '-')}`));
      if (!isValidTopicFilter(resolved)) continue;
      const wildcard = resolved.includes('+') || resolved.includes('#');
      if (resolved === '#' || (wildcard && !filterCovers(ownNamespace, resolved))) wide.push({ statementIndex, ...(statement.sid === undefined ? {} : { sid: statement.sid }), topic });
    }
  });
  return wide;
}

function permissivePolicy(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const wide = facts.policies
    .filter((p) => p.templates.length > 0 || p.overrides > 0)
    .map((p) => ({ policy: p, grants: permissiveGrants(p.document) }))
    .filter((p) => p.grants.length > 0);
  return result('permissive-policy', 'Device policies granting "#" or a wildcard outside devices/${device.id}/#', 'critical', settings, {
    count: wide.length,
    findings: wide.map(({ policy, grants }) => {
      const users = [...(policy.templates.length > 0 ? [`templates ${policy.templates.join(', ')}`] : []), ...(policy.overrides > 0 ? [plural(policy.overrides, 'device override')] : [])];
      const what = grants.map((g) => `statement ${g.statementIndex}${g.sid ? ` (${g.sid})` : ''} allows ${g.topic}`).join('; ');
      return { subject: `policy ${policy.name}`, detail: `${what}; used by ${users.join(' and ')}` };
    }),
    nextStep:
      'Narrow these statements to devices/${device.id}/… (or to explicit shared topics without wildcards) with `fleetgate policy set`, and check the result with `fleetgate policy explain`; a device that needs fleet-wide topics should be a service.',
  });
}

function auditChainVerification(facts: FleetFacts, settings: FleetCheckSettings): FleetCheckResult {
  const last = facts.lastAuditVerification;
  const maxAgeMs = settings.auditVerifyMaxAgeHours * 3_600_000;
  const title = `Audit chain verified in the last ${settings.auditVerifyMaxAgeHours} hours`;
  if (last !== undefined && !last.ok) {
    return result('audit-chain-verification', title, 'warning', settings, {
      count: 1,
      status: 'fail',
      findings: [{ subject: 'audit chain', detail: `the verification at ${last.at.toISOString()} found the chain broken${last.firstBrokenId === undefined ? '' : ` at entry ${last.firstBrokenId}`}` }],
      nextStep: 'The audit log was changed or lost entries: preserve the database as evidence, compare it with your last backup and a kept anchor (`fleetgate audit verify --anchor ID:HASH`), and find out who had write access.',
    });
  }
  const stale = last === undefined || facts.now.getTime() - last.at.getTime() > maxAgeMs;
  return result('audit-chain-verification', title, 'warning', settings, {
    count: stale ? 1 : 0,
    findings: stale ? [{ subject: 'audit chain', detail: last === undefined ? 'never verified' : `last verified ${Math.floor((facts.now.getTime() - last.at.getTime()) / 3_600_000)} hours ago, on ${last.at.toISOString()}` }] : [],
    nextStep: 'Run `fleetgate audit verify` (and keep the head it prints outside this system); schedule it daily, e.g. from cron.',
  });
}
