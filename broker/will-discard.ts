import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import { compilePolicy, decideInScope, effectivePolicyName } from '../core/index.ts';
import type { AuditInput, Registry } from '../registry/index.ts';
import { deleteStoredWill, takeWill, type Will } from './aedes-internals.ts';

/**
 * The last will of a session the gateway cuts. A will is a publish made on the device's behalf when its
 * connection ends without DISCONNECT [MQTT-3.1.2-8]; aedes makes it from `client.close()`, through
 * `authorizePublish`, and also stores it so that another broker of a cluster can publish it if this one
 * dies. When the gateway itself ends a session because the identity lost its right to be connected
 * (revoked, suspended, claim revoked, a policy that no longer allows it or its will topic), that will must
 * not go out: it would be a message from an identity that is no longer trusted, retained for every later
 * subscriber. So the will is taken off the client *before* `close()`, deleted from the will store, and
 * audited; the client is marked cut, and authorizePublish refuses anything still made in its name (README
 * "Revocation, audit and metrics"). A session that merely loses its connection keeps its will.
 */
export interface WillDiscard {
  /** Call before closing a session the gateway cut: its will (if any) is dropped and audited. */
  cut(client: Client, reason: string): void;
  /** For authorizePublish: false (audited) when the client's session was cut; nothing may go out for it. */
  mayPublish(client: Client, packet: { readonly topic: string; readonly retain?: boolean }): boolean;
  /**
   * For authorizePublish with no client: the stored will of a session whose broker died. Nobody can tell
   * whether that session was about to be cut, so the will goes out only if the identity is still active
   * and its policy, as it is now, allows the topic; otherwise it is discarded and audited.
   */
  authorizeOrphan(will: OrphanWill, callback: (error?: Error | null) => void): void;
}

/** A will as aedes-persistence stores it (`putWill` adds the client and broker ids). */
export interface OrphanWill {
  readonly topic: string;
  readonly retain?: boolean;
  readonly clientId?: string;
  readonly brokerId?: string;
}

export interface WillDiscardDeps {
  readonly registry: Registry;
  readonly audit: (entry: AuditInput) => void;
  readonly actorOf: (client: Client) => string;
  readonly deviceIdOf: (client: Client) => string | undefined;
  readonly log: Logger;
}

export function createWillDiscard(aedes: Aedes, deps: WillDiscardDeps): WillDiscard {
  const cutClients = new WeakSet<Client>();
  const remoteOf = (client: Client) => (client.conn as { remoteAddress?: string }).remoteAddress;
  const audit = (client: Client, will: Will, reason: string) => {
    const deviceId = deps.deviceIdOf(client);
    deps.audit({
      actor: deps.actorOf(client),
      action: 'mqtt.will',
      result: 'refused',
      code: 'MQTT_WILL_DISCARDED',
      ...(deviceId !== undefined ? { deviceId } : {}),
      detail: { remote: remoteOf(client), topic: will.topic.slice(0, 256), retain: will.retain === true, reason },
    });
  };

  return {
    cut(client, reason) {
      cutClients.add(client);
      const will = takeWill(client);
      if (will === undefined) return;
      audit(client, will, reason);
      // Stored per broker and client id; left there, another broker would publish it should this one die.
      deleteStoredWill(aedes, client.id).catch((error: unknown) => deps.log.warn({ err: error, clientId: client.id }, 'could not delete the stored will of a cut session'));
    },

    mayPublish(client, packet) {
      if (!cutClients.has(client)) return true;
      audit(client, packet, 'session cut by the gateway');
      return false;
    },

    authorizeOrphan(will, callback) {
      orphanWillRefusal(deps.registry, will)
        .catch((error: unknown) => {
          deps.log.error({ err: error, clientId: will.clientId }, 'could not check the will of a session of a dead broker; discarding it');
          return 'registry unavailable';
        })
        .then((reason) => {
          if (reason === undefined) return callback(null);
          const deviceId = typeof will.clientId === 'string' ? will.clientId.slice(0, 128) : undefined;
          deps.audit({
            actor: deviceId !== undefined ? `device:${deviceId}` : 'anonymous',
            action: 'mqtt.will',
            result: 'refused',
            code: 'MQTT_WILL_DISCARDED',
            ...(deviceId !== undefined ? { deviceId } : {}),
            detail: { topic: String(will.topic).slice(0, 256), retain: will.retain === true, brokerId: will.brokerId, reason },
          });
          callback(new Error('MQTT_WILL_DISCARDED'));
        });
    },
  };
}

/** Why the stored will of a session on a dead broker may not go out now, or undefined if it may. */
async function orphanWillRefusal(registry: Registry, will: OrphanWill): Promise<string | undefined> {
  const device = typeof will.clientId === 'string' ? await registry.getDevice(will.clientId) : undefined;
  if (device === undefined) return 'identity unknown';
  if (device.status !== 'active') return `device ${device.status}`;
  const policyName = effectivePolicyName(device, await registry.getTemplate(device.template));
  const policy = policyName === null ? undefined : await registry.getPolicy(policyName);
  if (policy === undefined) return 'policy deleted';
  const identity = { kind: 'device' as const, id: device.id, policy: compilePolicy(policy.document, { id: device.id, template: device.template, attributes: device.attributes }) };
  return decideInScope(identity, 'publish', will.topic).allowed ? undefined : 'will topic no longer allowed by the policy';
}
