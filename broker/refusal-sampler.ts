import { createAuditSampler } from '../core/index.ts';

/** One refusal as the caller saw it; the sampler keeps the first of each window for the audit entry. */
export interface RefusalSample {
  readonly remote: string | undefined;
  /** `device:<id>`, `claim:<serial>`; `anonymous@<remote>` when absent. */
  readonly actor?: string;
  readonly deviceId?: string;
  /** The audit action; by default derived from the code (broker/flow-control.ts). */
  readonly action?: string;
  /** Sample per actor and code rather than per code (refusals of an admitted session). */
  readonly perActor?: boolean;
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

/**
 * Refusals that an unauthenticated peer can cause at will (a reconnect storm, a flood of bad packets) are
 * audited at most twice per code and window, with the count each entry stands for and the addresses they
 * came from: core's audit sampler (core/audit-sampler.ts, shared with the API) on the broker's timers.
 */
export function createRefusalSampler<Code extends string>(onSummary: (code: Code, summary: RefusalSummary) => void, options: RefusalSamplerOptions = {}): RefusalSampler<Code> {
  const sampler = createAuditSampler<{ readonly code: Code; readonly sample: RefusalSample }, void>({
    windowMs: options.windowMs ?? 1000,
    maxSources: options.maxRemotes ?? 8,
    now: () => Date.now(),
    schedule: (callback, delayMs) => {
      const timer = setTimeout(callback, delayMs);
      // Summaries must not keep a process alive that is otherwise done.
      timer.unref();
      return () => clearTimeout(timer);
    },
    emit: ({ sample: { code, sample }, refused, sources }) => onSummary(code, { refused, sample, remotes: sources.filter((remote) => remote !== unknownRemote) }),
  });
  return {
    // The window key: the code, or the code and the actor (any string works; it is never read back).
    record: (code, sample) => sampler.record(sample.perActor && sample.actor !== undefined ? `${code} ${sample.actor}` : code, sample.remote ?? unknownRemote, { code, sample }),
    flush: () => sampler.flush(),
  };
}

/** Stands for a socket that no longer knows its address; never listed. */
const unknownRemote = '';
