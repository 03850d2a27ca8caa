/**
 * Token buckets keyed by a string (a claim id): `ratePerSecond` sustained, `burst` at once. In memory, per
 * process: in a cluster each provisioning process limits on its own, which bounds the total at N × rate.
 */
export interface RateLimiter {
  /** Takes one token; false when the bucket is empty. */
  tryTake(key: string): boolean;
}

export function createRateLimiter(options: { ratePerSecond: number; burst: number; now?: () => number }): RateLimiter {
  const now = options.now ?? (() => performance.now());
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    tryTake(key) {
      const t = now();
      const bucket = buckets.get(key) ?? { tokens: options.burst, at: t };
      bucket.tokens = Math.min(options.burst, bucket.tokens + ((t - bucket.at) / 1000) * options.ratePerSecond);
      bucket.at = t;
      buckets.set(key, bucket);
      if (buckets.size > 10_000) for (const [k, b] of buckets) if (b.tokens >= options.burst) buckets.delete(k); // forget idle keys
      if (bucket.tokens < 1) return false;
      bucket.tokens -= 1;
      return true;
    },
  };
}
