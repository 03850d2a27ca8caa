/**
 * Sampling for refusals an attacker can cause at will (unauthenticated API requests, pre-session MQTT
 * refusals): one audit entry per refusal would let a flood fill the disk, none would let it pass unseen.
 * Per key (an error code) and window (one second), the first refusal is reported at once, as it is; the
 * others of the window are counted and reported together when the window ends, with the last of them as the
 * example and the distinct sources seen. Every refusal is counted exactly once: summed over the entries, the
 * `refused` counts equal the number of refusals. At most two entries per key and window reach the audit
 * trail, whatever the rate.
 *
 * Pure: the caller supplies the clock and a one-shot timer (the tail of a burst must be reported even when
 * no further refusal comes), so the same sampler serves the API and the broker, and tests drive it by hand.
 */
export interface RefusalSummary<T> {
  readonly key: string;
  /** True for the first refusal of a window, written at once; false for the summary of the rest. */
  readonly first: boolean;
  /** The refusal this entry describes: the first of its window (refused = 1), or the last of the rest. */
  readonly sample: T;
  /** How many refusals this entry stands for. */
  readonly refused: number;
  /** Distinct sources (e.g. client addresses) among them, at most `maxSources`. */
  readonly sources: readonly string[];
  /** Refusals from sources left off `sources` (beyond `maxSources`): counted, not listed. */
  readonly unlistedSources: number;
  /** When the first and the last refusal this entry stands for happened, by the sampler's clock. */
  readonly firstAt: number;
  readonly lastAt: number;
}

export interface AuditSamplerOptions<T, R> {
  /** Window length per key, in the clock's unit (milliseconds). */
  readonly windowMs: number;
  readonly now: () => number;
  /** Arms a one-shot timer and returns its cancel function. */
  readonly schedule: (callback: () => void, delayMs: number) => () => void;
  /** Writes one entry; its result is handed back by `record` for the entry written at once. */
  readonly emit: (summary: RefusalSummary<T>) => R;
  /** Sources listed per entry (default 16); the rest are only counted. */
  readonly maxSources?: number;
}

export interface AuditSampler<T, R> {
  /**
   * Counts one refusal. Returns what `emit` returned when this refusal was written at once (the first of its
   * window), undefined when it was counted into the window's summary.
   */
  record(key: string, source: string, sample: T): R | undefined;
  /** Writes every pending summary now (shutdown) and cancels the timers. */
  flush(): void;
}

interface Window<T> {
  readonly startedAt: number;
  readonly cancel: () => void;
  pending: number;
  last: T | undefined;
  firstPendingAt: number;
  lastAt: number;
  readonly sources: Set<string>;
  unlistedSources: number;
}

export function createAuditSampler<T, R>(options: AuditSamplerOptions<T, R>): AuditSampler<T, R> {
  const maxSources = options.maxSources ?? 16;
  const windows = new Map<string, Window<T>>();

  const close = (key: string) => {
    const window = windows.get(key);
    if (window === undefined) return;
    windows.delete(key);
    window.cancel();
    if (window.pending === 0 || window.last === undefined) return;
    options.emit({
      key,
      first: false,
      sample: window.last,
      refused: window.pending,
      sources: [...window.sources],
      unlistedSources: window.unlistedSources,
      firstAt: window.firstPendingAt,
      lastAt: window.lastAt,
    });
  };

  return {
    record(key, source, sample) {
      const at = options.now();
      let window = windows.get(key);
      // The timer may lag behind the clock (a busy event loop): the clock decides where a window ends.
      if (window !== undefined && at - window.startedAt >= options.windowMs) {
        close(key);
        window = undefined;
      }
      if (window === undefined) {
        const cancel = options.schedule(() => close(key), options.windowMs);
        windows.set(key, { startedAt: at, cancel, pending: 0, last: undefined, firstPendingAt: at, lastAt: at, sources: new Set(), unlistedSources: 0 });
        return options.emit({ key, first: true, sample, refused: 1, sources: [source], unlistedSources: 0, firstAt: at, lastAt: at });
      }
      if (window.pending === 0) window.firstPendingAt = at;
      window.pending++;
      window.last = sample;
      window.lastAt = at;
      if (window.sources.has(source)) return undefined;
      if (window.sources.size < maxSources) window.sources.add(source);
      else window.unlistedSources++;
      return undefined;
    },
    flush() {
      for (const key of [...windows.keys()]) close(key);
    },
  };
}
