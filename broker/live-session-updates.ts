import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import { type Clock, compilePolicy, decideInScope, type GatewayEvent, type GatewayMetrics, type SessionIdentity, type SessionSummary } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';
import { clientById, listClients, subscriptionsOf, unsubscribe } from './aedes-internals.ts';
import type { FlowControl } from './flow-control.ts';
import { recheckSession, type SessionContext } from './session-admission.ts';
import type { SessionHooks } from './session-hooks.ts';
import type { SessionTable } from './session-table.ts';
import type { WillDiscard } from './will-discard.ts';

export type SessionUpdate = { readonly session: SessionContext } | { readonly closeReason: string };

/**
 * An open device session read again from the registry after its template changed: the template names the
 * policy of every device without a policy of its own, and the traffic limits of all of them, so the
 * effective policy and limits are looked up anew rather than patched (a device with its own policy keeps
 * it). The subject the policy is compiled for (id, template, attributes) is the one admitted at CONNECT.
 * Whatever admission would now refuse (status, certificate, a policy that no longer exists) closes it.
 */
export async function refreshSession(session: SessionContext, registry: Registry): Promise<SessionUpdate> {
  if (session.identity.kind !== 'device' || session.subject === undefined) return { session };
  const admission = await registry.getAdmission(session.certificateSerial);
  if (admission === undefined) return { closeReason: 'certificate no longer in registry' };
  if (admission.device.status !== 'active') return { closeReason: `device ${admission.device.status}` };
  if (admission.certificate.status !== 'active') return { closeReason: `certificate ${admission.certificate.status}` };
  if (admission.policy === undefined) return { closeReason: 'policy deleted' };
  const identity: SessionIdentity = { kind: 'device', id: session.subject.id, policy: compilePolicy(admission.policy.document, session.subject) };
  return { session: { ...session, identity, policyName: admission.policy.name, limits: admission.limits } };
}

export interface LiveSessionDeps {
  readonly aedes: Aedes;
  readonly table: SessionTable;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: GatewayMetrics;
  readonly wills: Pick<WillDiscard, 'cut'>;
  readonly flow: Pick<FlowControl, 'refreshLimits'>;
  readonly hooks: Pick<SessionHooks, 'refuse' | 'summaryOf'>;
}

/** What happens to open sessions when the registry changes under them (events on the bus, or a recovery). */
export interface LiveSessions {
  /** Closes the live session of this client id now, and any that is being admitted; true if one was open. */
  disconnect(clientId: string, reason: string, changedAt?: number): boolean;
  /** Applies a gateway event to the open sessions it concerns. */
  apply(event: GatewayEvent): void;
  /** Back from a Redis outage: every open session checked again, every policy and template in use re-applied. */
  recheckAll(): void;
  sessions(): SessionSummary[];
}

export function createLiveSessions(deps: LiveSessionDeps): LiveSessions {
  const { aedes, table, registry, clock, log, metrics, wills, flow, hooks } = deps;
  const admitted = () => listClients(aedes).flatMap((client) => {
    const session = table.sessionOf(client);
    return session === undefined ? [] : [{ client, session }];
  });

  function disconnect(clientId: string, reason: string, changedAt?: number): boolean {
    table.kicked(clientId, clock.now().getTime());
    const client = clientById(aedes, clientId);
    if (client === undefined) return false;
    log.info({ clientId, reason }, 'closing session');
    wills.cut(client, reason);
    client.close(() => {
      if (changedAt !== undefined) metrics.revocationToDisconnect(Math.max(0, Date.now() - changedAt) / 1000);
    });
    return true;
  }

  /** A revoked claim stops enrolling now, including sessions that are connected and about to ask. */
  function disconnectClaimSessions(claimKey: string): void {
    for (const { client, session } of admitted()) {
      if (session.identity.kind === 'claim' && session.certificateSerial === claimKey) disconnect(client.id, 'claim revoked');
    }
  }

  /**
   * A changed policy applies to open sessions at once: each is recompiled, so the next publish, subscribe
   * and every delivery (authorizeForward) are judged by the new statements, and subscriptions it no longer
   * allows are removed. A deleted policy closes its sessions (fail closed).
   */
  async function applyPolicyChange(name: string): Promise<void> {
    const policy = await registry.getPolicy(name);
    for (const { client, session } of admitted()) {
      if (session.policyName !== name || session.subject === undefined) continue;
      if (policy === undefined) {
        disconnect(client.id, 'policy deleted');
        continue;
      }
      const identity = { kind: 'device' as const, id: session.subject.id, policy: compilePolicy(policy.document, session.subject) };
      if (!willStillAllowed(client, identity)) continue;
      table.setSession(client, { ...session, identity });
      dropForbiddenSubscriptions(client, identity);
    }
    log.info({ policy: name }, 'policy applied to open sessions');
  }

  /**
   * A changed template applies to the open sessions of its devices at once, as a policy change does (README
   * "Enrollment and renewal", templates): each is read again from the registry (`refreshSession` above),
   * recompiled against the policy it now gets, its subscriptions checked again, and the template's new traffic
   * limits apply from its next packet. A session admission would now refuse is closed.
   */
  async function applyTemplateChange(name: string): Promise<void> {
    const affected = admitted().filter(({ session }) => session.subject?.template === name);
    await Promise.all(
      affected.map(async ({ client, session }) => {
        const update = await refreshSession(session, registry).catch((error: unknown) => {
          log.error({ err: error, clientId: client.id }, 'could not re-read the session; closing it');
          return { closeReason: 'session could not be re-checked' };
        });
        // Gone meanwhile, or replaced by a newer session admitted from the registry as it is now. (A policy
        // change applied meanwhile is overwritten: both are registry reads made after their events.)
        if (client.closed || clientById(aedes, client.id) !== client) return;
        if ('closeReason' in update) return void disconnect(client.id, update.closeReason);
        if (!willStillAllowed(client, update.session.identity)) return;
        table.setSession(client, update.session);
        flow.refreshLimits(client);
        dropForbiddenSubscriptions(client, update.session.identity, 'template changed');
      }),
    );
    log.info({ template: name, sessions: affected.length }, 'template applied to open sessions');
  }

  /**
   * Admission refuses a will the policy does not allow (MQTT_WILL_DENIED), so a session whose new policy no
   * longer allows its will topic is closed, its will discarded; the device learns why when it reconnects.
   */
  function willStillAllowed(client: Client, identity: SessionIdentity): boolean {
    const topic = table.willTopicOf(client);
    if (topic === undefined || decideInScope(identity, 'publish', topic).allowed) return true;
    disconnect(client.id, 'will topic no longer allowed by the policy');
    return false;
  }

  /**
   * Subscriptions the new policy no longer allows are removed from the session, as if the device had
   * unsubscribed (no UNSUBACK is sent: it did not ask). A persistent session's stored copy is refused again
   * when the session is restored, since aedes re-authorizes stored subscriptions at CONNECT.
   */
  function dropForbiddenSubscriptions(client: Client, identity: SessionIdentity, reason = 'policy changed'): void {
    const forbidden = subscriptionsOf(client).filter((filter) => !decideInScope(identity, 'subscribe', filter).allowed);
    if (forbidden.length === 0) return;
    for (const filter of forbidden) hooks.refuse(client, 'mqtt.subscribe', 'ACL_SUBSCRIBE_DENIED', { filter: filter.slice(0, 256), reason });
    unsubscribe(client, forbidden, (error) => {
      if (error) log.warn({ err: error, clientId: client.id }, 'could not remove subscriptions the new policy forbids');
    });
  }

  return {
    disconnect,
    apply(event) {
      if (event.type === 'device.status' && event.status !== 'active') disconnect(event.deviceId, `device ${event.status}`, event.at);
      if (event.type === 'policy.changed') applyPolicyChange(event.policy).catch((error: unknown) => log.error({ err: error, policy: event.policy }, 'could not apply the policy change'));
      if (event.type === 'template.changed') applyTemplateChange(event.template).catch((error: unknown) => log.error({ err: error, template: event.template }, 'could not apply the template change'));
      if (event.type === 'claim.revoked') disconnectClaimSessions(event.certificateSerial);
    },

    /**
     * Back from a Redis outage: revocations published meanwhile never arrived (pub/sub is at-most-once), so
     * every open session is checked against the registry again and closed if it no longer passes.
     */
    recheckAll() {
      const policies = new Set<string>();
      const templates = new Set<string>();
      for (const { client, session } of admitted()) {
        if (session.policyName !== undefined) policies.add(session.policyName);
        if (session.subject !== undefined) templates.add(session.subject.template);
        recheckSession(session, registry, clock.now()).then(
          (reason) => reason !== undefined && disconnect(client.id, reason),
          (error: unknown) => {
            log.error({ err: error, clientId: client.id }, 'could not re-check the session; closing it');
            disconnect(client.id, 'session could not be re-checked');
          },
        );
      }
      // Policy changes made meanwhile were missed too: recompile every policy in use.
      for (const name of policies) applyPolicyChange(name).catch((error: unknown) => log.error({ err: error, policy: name }, 'could not re-apply the policy'));
      for (const name of templates) applyTemplateChange(name).catch((error: unknown) => log.error({ err: error, template: name }, 'could not re-apply the template'));
    },

    sessions: () => admitted().map(({ client, session }) => hooks.summaryOf(client, session)),
  };
}
