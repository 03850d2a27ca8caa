/**
 * A token bucket on a monotonic clock (milliseconds). `take` may drive the balance negative: that is a
 * reservation, and `waitMs` says how long until the balance is back at zero, which is how a back-pressured
 * QoS 1 publish knows when it may proceed.
 */
export class TokenBucket {
  #tokens: number;
  #updatedAt: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    now: number,
  ) {
    this.#tokens = burst;
    this.#updatedAt = now;
  }

  #refill(now: number): void {
    const elapsed = now - this.#updatedAt;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.burst, this.#tokens + (elapsed * this.ratePerSecond) / 1000);
      this.#updatedAt = now;
    }
  }

  /** Takes `cost` if the bucket holds it; false (and nothing taken) otherwise. */
  tryTake(cost: number, now: number): boolean {
    this.#refill(now);
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }

  /** Takes `cost` unconditionally (possibly into debt); returns the milliseconds until the debt is paid. */
  take(cost: number, now: number): number {
    this.#refill(now);
    this.#tokens -= cost;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.ratePerSecond);
  }

  /** Milliseconds until the balance is back at zero (0 when it is not in debt). */
  waitMs(now: number): number {
    this.#refill(now);
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.ratePerSecond);
  }
}
