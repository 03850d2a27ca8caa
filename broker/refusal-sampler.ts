/** One refusal as the caller saw it; the sampler keeps the first of each window for the audit entry. */
export interface RefusalSample {
  readonly remote: string | undefined;
  /** `device:<id>`, `claim:<serial>`; `anonymous@<remote>` when absent. */
  readonly actor?: string;
  readonly deviceId?: string;
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** What one audit entry stands for: `refused` refusals of one code, from these remote addresses. */
export interface RefusalSummary {
  readonly refused: number;
  readonly sample: RefusalSample;
  /** Distinct remote addresses among them, at most `maxRemotes`. */
  readonly remotes: readonly string[];
}

export interface RefusalSampler<Code extends string> {
  record(code: Code, sample: RefusalSample): void;
  /** Reports what is still counted and stops the timers (before the audit log closes). */
  flush(): void;
}

export interface RefusalSamplerOptions {
  readonly windowMs?: number;
  readonly maxRemotes?: number;
}

interface Window {
  refused: number;
  sample: RefusalSample | undefined;
  remotes: Set<string>;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * Refusals that an unauthenticated peer can cause at will (a reconnect storm, a flood of bad packets) are
 * audited at most once per code and window: one audit row per refused socket would turn the flood into a
 * write flood on the registry. Nothing is hidden either: the first refusal of a quiet code is reported at
 * once, and every later one is counted into the summary that closes its window, with the addresses it came
 * from, so the entries of a code always add up to the refusals made.
 */
export function createRefusalSampler<Code extends string>(onSummary: (code: Code, summary: RefusalSummary) => void, options: RefusalSamplerOptions = {}): RefusalSampler<Code> {
  const windowMs = options.windowMs ?? 1000;
  const maxRemotes = options.maxRemotes ?? 8;
  const windows = new Map<Code, Window>();

  const close = (code: Code, window: Window) => {
    if (window.refused === 0 || window.sample === undefined) {
      windows.delete(code);
      return;
    }
    onSummary(code, { refused: window.refused, sample: window.sample, remotes: [...window.remotes] });
    window.refused = 0;
    window.sample = undefined;
    window.remotes.clear();
    startTimer(code, window);
  };
  const startTimer = (code: Code, window: Window) => {
    window.timer = setTimeout(() => close(code, window), windowMs);
    // Summaries must not keep a process alive that is otherwise done.
    window.timer.unref();
  };

  return {
    record(code, sample) {
      const window = windows.get(code);
      if (window === undefined) {
        onSummary(code, { refused: 1, sample, remotes: sample.remote === undefined ? [] : [sample.remote] });
        const opened: Window = { refused: 0, sample: undefined, remotes: new Set() };
        startTimer(code, opened);
        windows.set(code, opened);
        return;
      }
      window.refused++;
      window.sample ??= sample;
      if (sample.remote !== undefined && window.remotes.size < maxRemotes) window.remotes.add(sample.remote);
    },
    flush() {
      for (const [code, window] of windows) {
        clearTimeout(window.timer);
        if (window.refused > 0 && window.sample !== undefined) onSummary(code, { refused: window.refused, sample: window.sample, remotes: [...window.remotes] });
      }
      windows.clear();
    },
  };
}
