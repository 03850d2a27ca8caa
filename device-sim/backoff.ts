/**
 * Retry delays with "full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter", 2015): each
 * delay is uniform in [0, min(cap, base·2^attempt)). mqtt.js retries at a fixed interval with no jitter, so
 * a gateway restart would see every device come back in the same instant; spreading the retries over the
 * whole window is what turns that storm into a steady trickle.
 */
export interface BackoffPolicy {
  /** Upper bound of the first delay. */
  readonly baseMs: number;
  /** No delay is ever longer than this. */
  readonly capMs: number;
  /** Attempts in total (the first try included) before a retryable failure becomes final. */
  readonly maxAttempts: number;
}

export const defaultBackoff: BackoffPolicy = { baseMs: 500, capMs: 30_000, maxAttempts: 8 };

/** Delay before retry number `attempt` (0 = the first retry). `random` is injectable for tests. */
export function fullJitterDelayMs(attempt: number, policy: Pick<BackoffPolicy, 'baseMs' | 'capMs'>, random: () => number = Math.random): number {
  // 2^attempt overflows to Infinity long after the cap is reached; min() keeps it finite.
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}
