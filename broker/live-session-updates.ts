import { compilePolicy, type SessionIdentity } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';
import type { SessionContext } from './session-admission.ts';

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
