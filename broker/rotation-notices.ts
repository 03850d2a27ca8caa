import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import { type Clock, type RotationCommand, rotateTopic } from '../core/index.ts';
import type { Registry } from '../registry/index.ts';
import { clientById, subscriptionsOf } from './aedes-internals.ts';
import type { SessionTable } from './session-table.ts';

export interface RotationNoticeDeps {
  readonly aedes: Aedes;
  readonly table: SessionTable;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * Delivers rotation campaigns' rotate commands (README "Rotation campaigns") to device sessions of this
 * broker. The registry, not the broker, remembers who still has to be told: provisioning's scheduler marks
 * a device reached and announces it on the event bus; the broker holding that device's live session,
 * subscribed to `$fleetgate/certs/{id}/rotate`, writes the command to it and records the device notified.
 * A device that was offline then (or whose broker missed the event: the bus is at-most-once) gets it when
 * it next subscribes to its rotate topic, here or on any other broker, because the subscription itself
 * asks the registry. Nothing is retained in the broker: a renewed device is simply no longer pending, and
 * a command never outlives its campaign.
 */
export interface RotationNotices {
  /** The scheduler reached this device: tell its live session, if it is on this broker. */
  notify(campaignId: string, deviceId: string): void;
  /** A session subscribed (or its persistent subscriptions were restored): tell it what waits for it. */
  subscribed(client: Client, filters: readonly string[]): void;
}

export function createRotationNotices(deps: RotationNoticeDeps): RotationNotices {
  const { aedes, table, registry, clock, log } = deps;
  /** Campaigns already written to each session object: one command per campaign per session. */
  const told = new WeakMap<Client, Set<string>>();

  /** The device session of this id on this broker, if it is subscribed to its own rotate topic. */
  const listening = (client: Client | undefined, deviceId: string): client is Client => {
    if (client === undefined || client.closed) return false;
    const session = table.sessionOf(client);
    return session?.identity.kind === 'device' && session.clientId === deviceId && subscriptionsOf(client).includes(rotateTopic(deviceId));
  };

  function deliver(client: Client, deviceId: string, campaignId: string): void {
    const sent = told.get(client) ?? new Set<string>();
    if (sent.has(campaignId)) return;
    sent.add(campaignId);
    told.set(client, sent);
    const command: RotationCommand = { campaignId, requestedAt: clock.now().toISOString() };
    // Through the session's own delivery path: authorizeForward checks `receive` again, QoS 1 as subscribed.
    client.publish({ cmd: 'publish', topic: rotateTopic(deviceId), payload: Buffer.from(JSON.stringify(command)), qos: 1, retain: false, dup: false }, (error?: Error) => {
      if (error) {
        sent.delete(campaignId);
        log.warn({ err: error, deviceId, campaignId }, 'could not write the rotate command; the device gets it when it next subscribes');
        return;
      }
      // Written to the session: the device counts as notified (audited the first time).
      registry
        .markRotationNotified(campaignId, deviceId, { actor: 'broker', action: 'rotation.notify', result: 'ok', detail: { campaignId } })
        .catch((markError: unknown) => log.error({ err: markError, deviceId, campaignId }, 'could not record the rotation notice'));
    });
  }

  return {
    notify(campaignId, deviceId) {
      const client = clientById(aedes, deviceId);
      if (listening(client, deviceId)) deliver(client, deviceId, campaignId);
    },

    subscribed(client, filters) {
      const deviceId = client.id;
      if (!filters.includes(rotateTopic(deviceId))) return;
      registry.pendingRotations(deviceId).then(
        (pending) => {
          // Still the same live session (not closed or taken over meanwhile).
          if (!listening(client, deviceId) || clientById(aedes, deviceId) !== client) return;
          for (const { campaignId } of pending) deliver(client, deviceId, campaignId);
        },
        (error: unknown) => log.error({ err: error, deviceId }, 'could not read pending rotations'),
      );
    },
  };
}
