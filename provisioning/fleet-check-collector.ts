import {
  type CaFact,
  type Clock,
  defaultFleetCheckSettings,
  evaluateFleetChecks,
  type FleetCheckId,
  type FleetCheckResult,
  type FleetCheckSettings,
  FleetgateError,
  type FleetFacts,
  type SessionDirectory,
  type SessionSummary,
  type TakeoverFact,
} from '../core/index.ts';
import type { AuditEntry, Registry } from '../registry/index.ts';

export interface FleetCheckDeps {
  readonly registry: Registry;
  readonly sessions: SessionDirectory;
  readonly clock: Clock;
  /**
   * Every CA the gateway knows: root, device and claim CAs with their rotation state, and manufacturer CAs.
   * The composition root (cli/provisioning-api.ts) wires it; the collector only reads it.
   */
  readonly listCas: () => Promise<readonly CaFact[]>;
  readonly settings?: FleetCheckSettings;
}

export interface FleetCheckRun {
  readonly checkedAt: Date;
  readonly results: readonly FleetCheckResult[];
}

export interface FleetChecks {
  /**
   * Every check (or those in `only`). Answers from a run at most `cacheMs` old, so that a Prometheus scrape
   * every few seconds, the console's polling and the CLI share one set of queries; `fresh` runs anew.
   */
  run(options?: { readonly only?: readonly FleetCheckId[]; readonly fresh?: boolean }): Promise<FleetCheckRun>;
}

/** Device ids listed per template in a finding. */
const sampleSize = 10;
/** The audit trail's page size (registry AuditQuery): takeovers beyond it in the window are not read. */
const auditPage = 1000;

/**
 * Gathers the facts the fleet health checks judge (core/fleet-checks.ts): counts from the registry in SQL
 * (registry.fleetCheckFacts: no row per device is loaded), the live session list, the CAs, and what the
 * audit trail recorded (`mqtt.takeover` from the brokers, `audit.verify` from GET /v1/audit/verify).
 */
export async function collectFleetFacts(deps: FleetCheckDeps): Promise<FleetFacts> {
  const settings = deps.settings ?? defaultFleetCheckSettings;
  const now = deps.clock.now();
  const [live, cas, claims, templates, policies] = await Promise.all([liveSessions(deps.sessions), deps.listCas(), deps.registry.listClaims(), deps.registry.listTemplates(), deps.registry.listPolicies()]);
  const devices = live.filter((s) => s.kind === 'device');
  const lookbackSeconds = Math.max(settings.takeoverWindowSeconds, settings.clonedLookbackSeconds);
  const [facts, takeoverEntries, lastVerify] = await Promise.all([
    deps.registry.fleetCheckFacts({ now, expiringBefore: new Date(now.getTime() + settings.deviceExpiryDays * 86_400_000), sample: sampleSize, liveDeviceIds: devices.map((s) => s.clientId) }),
    deps.registry.queryAudit({ action: 'mqtt.takeover', result: 'ok', since: new Date(now.getTime() - lookbackSeconds * 1000), limit: auditPage }),
    deps.registry.queryAudit({ action: 'audit.verify', limit: 1 }),
  ]);
  const inactive = new Map(facts.inactive.map((d) => [d.id, d.status]));
  const allowlisted = new Map(templates.map((t) => [t.name, t.requireAllowlist]));
  const overrides = new Map(facts.policyOverrides.map((o) => [o.policy, o.devices]));
  const verify = lastVerify[0];
  return {
    now,
    cas,
    expiringCertificates: facts.expiring,
    renewalOverdue: facts.renewalOverdue,
    inactiveSessions: devices.flatMap((s) => {
      const status = inactive.get(s.clientId);
      return status === undefined ? [] : [{ deviceId: s.clientId, status, certificateSerial: s.certificateSerial, ...(s.broker === undefined ? {} : { broker: s.broker }) }];
    }),
    takeovers: takeoverEntries.flatMap(takeoverOf),
    claims: claims.map((c) => ({
      id: c.id,
      kind: c.issuerPem ? ('manufacturer-ca' as const) : ('claim-certificate' as const),
      allowlisted: allowlisted.get(c.template) ?? false,
      template: c.template,
      maxUses: c.maxUses,
      uses: c.uses,
      expiresAt: c.expiresAt,
      status: c.status,
    })),
    // Only policies devices get: through a template (which enrolls devices) or a device's own override.
    // The backend policy of services is wide by design and is judged only if a template or device uses it.
    policies: policies.map((p) => ({ name: p.name, document: p.document, templates: templates.filter((t) => t.policy === p.name).map((t) => t.name), overrides: overrides.get(p.name) ?? 0 })),
    lastAuditVerification: verify === undefined ? undefined : { at: verify.at, ok: verify.result === 'ok', ...(typeof verify.detail?.firstBrokenId === 'number' ? { firstBrokenId: verify.detail.firstBrokenId } : {}) },
  };
}

/** A broker's `mqtt.takeover` entry (broker/session-hooks.ts) as a fact; an entry of another shape is skipped. */
function takeoverOf(entry: AuditEntry): TakeoverFact[] {
  const detail = entry.detail as { serial?: unknown; remote?: unknown; previous?: { serial?: unknown; remote?: unknown; connectedAt?: unknown } } | undefined;
  const previous = detail?.previous;
  if (entry.deviceId === undefined || typeof detail?.serial !== 'string' || typeof previous?.serial !== 'string' || typeof previous.connectedAt !== 'string') return [];
  return [
    {
      clientId: entry.deviceId,
      at: entry.at,
      certificateSerial: detail.serial,
      ...(typeof detail.remote === 'string' ? { remoteAddress: detail.remote } : {}),
      previous: { certificateSerial: previous.serial, connectedAt: new Date(previous.connectedAt), ...(typeof previous.remote === 'string' ? { remoteAddress: previous.remote } : {}) },
    },
  ];
}

async function liveSessions(directory: SessionDirectory): Promise<readonly SessionSummary[]> {
  try {
    return await directory.list();
  } catch (error) {
    throw new FleetgateError('CLUSTER_UNAVAILABLE', { cause: error });
  }
}

/** The checks with a short-lived cache (see FleetChecks.run). */
export function createFleetChecks(deps: FleetCheckDeps, options: { readonly cacheMs?: number } = {}): FleetChecks {
  const cacheMs = options.cacheMs ?? 10_000;
  let cached: { at: number; run: Promise<FleetCheckRun> } | undefined;
  const settings = deps.settings ?? defaultFleetCheckSettings;
  return {
    async run(request = {}) {
      const now = Date.now();
      if (request.fresh === true || cached === undefined || now - cached.at > cacheMs) {
        const run = collectFleetFacts(deps).then((facts) => ({ checkedAt: facts.now, results: evaluateFleetChecks(facts, settings) }));
        cached = { at: now, run };
        // A failed run is not kept: the next caller tries again.
        run.catch(() => {
          if (cached?.run === run) cached = undefined;
        });
      }
      const { checkedAt, results } = await cached.run;
      const only = request.only;
      return { checkedAt, results: only === undefined ? results : results.filter((r) => only.includes(r.id)) };
    },
  };
}
