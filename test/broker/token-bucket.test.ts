import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../broker/token-bucket.ts';

describe('TokenBucket', () => {
  it('starts full, refuses beyond the burst and refills at the rate', () => {
    const bucket = new TokenBucket(10, 20, 0);
    for (let i = 0; i < 20; i++) expect(bucket.tryTake(1, 0)).toBe(true);
    expect(bucket.tryTake(1, 0)).toBe(false);
    expect(bucket.tryTake(1, 99)).toBe(false); // 0.99 token
    expect(bucket.tryTake(1, 100)).toBe(true);
    expect(bucket.tryTake(5, 10_000)).toBe(true); // refilled to the burst, never above
    expect(bucket.tryTake(16, 10_000)).toBe(false);
    expect(bucket.tryTake(15, 10_000)).toBe(true);
  });

  it('takes into debt and says how long until it is paid back', () => {
    const bucket = new TokenBucket(5, 10, 0);
    expect(bucket.take(10, 0)).toBe(0);
    expect(bucket.take(1, 0)).toBe(200);
    expect(bucket.take(1, 0)).toBe(400);
    expect(bucket.waitMs(300)).toBe(100);
    expect(bucket.waitMs(400)).toBe(0);
    expect(bucket.tryTake(1, 400)).toBe(false);
  });

  it('never counts a clock that goes back as refill', () => {
    const bucket = new TokenBucket(1000, 1, 1000);
    expect(bucket.tryTake(1, 1000)).toBe(true);
    expect(bucket.tryTake(1, 500)).toBe(false);
  });
});
