import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import type { GatewayEvent } from '../../core/index.ts';
import { createRedisEventBus, type RedisEventBus } from '../../cluster/redis-event-bus.ts';
import { until } from '../helpers/until.ts';

/** Every event type crosses Redis intact: a type the bus does not know is dropped by every process. */
const buses: RedisEventBus[] = [];
afterAll(async () => {
  await Promise.all(buses.map((bus) => bus.close()));
});

describe('the event bus on Redis', () => {
  it('carries every event type from one process to another', async () => {
    const prefix = `fleetgate-test-${randomUUID()}`;
    const sender = await createRedisEventBus({ url: 'redis://127.0.0.1:6379/0', prefix });
    const receiver = await createRedisEventBus({ url: 'redis://127.0.0.1:6379/0', prefix });
    buses.push(sender, receiver);
    const received: GatewayEvent[] = [];
    receiver.subscribe((event) => received.push(event));
    const events: GatewayEvent[] = [
      { type: 'device.status', deviceId: 'dev-1', status: 'revoked', reason: 'keyCompromise', at: 1 },
      { type: 'policy.changed', policy: 'default' },
      { type: 'template.changed', template: 'meters' },
      { type: 'claim.revoked', claimId: 'batch-1', certificateSerial: 'ab01' },
      { type: 'trust.changed' },
    ];
    for (const event of events) await sender.publish(event);
    await until(() => received.length === events.length, 'every event');
    expect(received).toEqual(events);
  });
});
