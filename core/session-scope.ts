import type { ErrorCode } from './errors.ts';
import type { CompiledPolicy, Decision, PolicyAction } from './policy.ts';
import { enrollTopics, renewTopics, trustBundleTopic } from './protocol-topics.ts';
import { isReservedTopic, isValidTopicFilter, isValidTopicName } from './topic.ts';

/**
 * What one MQTT session may do with a topic: the fixed scope of its kind of identity first, then its policy.
 * Claim sessions never reach a policy: they may only talk on their own enrollment topics, whatever any
 * policy says. "$"-topics are the gateway's own and no policy can grant them.
 */
export type SessionIdentity =
  | { readonly kind: 'device'; readonly id: string; readonly policy: CompiledPolicy }
  | { readonly kind: 'claim'; readonly serial: string };

export interface ScopeDecision {
  readonly allowed: boolean;
  /** Set when refused. */
  readonly code?: ErrorCode;
  /** The policy decision, when the policy decided. */
  readonly decision?: Decision;
}

const allowed: ScopeDecision = Object.freeze({ allowed: true });

const refusedCode: Record<PolicyAction, ErrorCode> = {
  publish: 'ACL_PUBLISH_DENIED',
  subscribe: 'ACL_SUBSCRIBE_DENIED',
  receive: 'ACL_RECEIVE_DENIED',
};

export function decideInScope(identity: SessionIdentity, action: PolicyAction, topic: string): ScopeDecision {
  const valid = action === 'subscribe' ? isValidTopicFilter(topic) : isValidTopicName(topic);
  if (!valid) return { allowed: false, code: action === 'subscribe' ? 'TOPIC_FILTER_INVALID' : 'TOPIC_INVALID' };

  if (identity.kind === 'claim') {
    const topics = enrollTopics(identity.serial);
    return gatewayTopicDecision(action, topic, topics.request, [topics.accepted, topics.rejected], 'ACL_CLAIM_SCOPE');
  }

  // A "$" first level is reachable only literally: wildcard filters never match it [MQTT-4.7.2-1].
  if (isReservedTopic(topic)) {
    if (topic === trustBundleTopic) return action === 'publish' ? { allowed: false, code: 'ACL_RESERVED_TOPIC' } : allowed;
    const topics = renewTopics(identity.id);
    return gatewayTopicDecision(action, topic, topics.request, [topics.accepted, topics.rejected], 'ACL_RESERVED_TOPIC');
  }

  const decision = identity.policy.decide(action, topic);
  return decision.effect === 'allow' ? { allowed: true, decision } : { allowed: false, code: refusedCode[action], decision };
}

function gatewayTopicDecision(
  action: PolicyAction,
  topic: string,
  requestTopic: string,
  replyTopics: readonly string[],
  code: ErrorCode,
): ScopeDecision {
  // Literal comparison: the serial/id comes from the client, and a "+" in it must not turn into a wildcard.
  const ok = action === 'publish' ? topic === requestTopic : replyTopics.includes(topic);
  return ok ? allowed : { allowed: false, code };
}
