import { describe, expect, it } from 'vitest';
import { createAuditSampler, type RefusalSummary } from './audit-sampler.ts';

/** A clock and a timer queue driven by hand: time only moves when the test says so. */
function harness(windowMs = 1000, maxSources?: number) {
  let now = 0;
  const timers: { at: number; callback: () => void; cancelled: boolean }[] = [];
  const emitted: RefusalSummary<string>[] = [];
  const sampler = createAuditSampler<string, string>({
    windowMs,
    now: () => now,
    schedule: (callback, delayMs) => {
      const timer = { at: now + delayMs, callback, cancelled: false };
      timers.push(timer);
      return () => (timer.cancelled = true);
    },
    emit: (summary) => {
      emitted.push(summary);
      return `written ${summary.sample}`;
    },
    ...(maxSources === undefined ? {} : { maxSources }),
  });
  const advance = (ms: number, fireTimers = true) => {
    now += ms;
    if (!fireTimers) return;
    for (const timer of timers.filter((t) => !t.cancelled && t.at <= now)) {
      timer.cancelled = true;
      timer.callback();
    }
  };
  const total = () => emitted.reduce((sum, entry) => sum + entry.refused, 0);
  return { sampler, emitted, advance, total };
}

describe('audit sampler', () => {
  it('writes the first refusal at once and the rest of its window as one summary when the window ends', () => {
    const { sampler, emitted, advance, total } = harness();
    expect(sampler.record('API_UNAUTHENTICATED', '10.0.0.1', 'r1')).toBe('written r1');
    for (let n = 2; n <= 200; n++) {
      expect(sampler.record('API_UNAUTHENTICATED', `10.0.0.${n % 3}`, `r${n}`)).toBeUndefined();
      advance(2);
    }
    expect(emitted).toHaveLength(1);
    advance(1000);
    expect(emitted).toHaveLength(2);
    expect(emitted[0]).toMatchObject({ first: true, refused: 1, sample: 'r1' });
    expect(emitted[1]).toMatchObject({ key: 'API_UNAUTHENTICATED', first: false, sample: 'r200', refused: 199, unlistedSources: 0, firstAt: 0, lastAt: 396 });
    expect([...(emitted[1]?.sources ?? [])].sort()).toEqual(['10.0.0.0', '10.0.0.1', '10.0.0.2']);
    expect(total()).toBe(200);
  });

  it('keeps a window per key', () => {
    const { sampler, emitted, advance, total } = harness();
    sampler.record('A', 's', 'a1');
    sampler.record('B', 's', 'b1');
    sampler.record('A', 's', 'a2');
    expect(emitted.map((e) => e.sample)).toEqual(['a1', 'b1']);
    advance(1000);
    expect(emitted.map((e) => [e.sample, e.refused])).toEqual([['a1', 1], ['b1', 1], ['a2', 1]]);
    expect(total()).toBe(3);
  });

  it('writes nothing more for a window with a single refusal, and starts afresh after it', () => {
    const { sampler, emitted, advance } = harness();
    sampler.record('A', 's', 'a1');
    advance(5000);
    expect(emitted).toHaveLength(1);
    expect(sampler.record('A', 's', 'a2')).toBe('written a2');
  });

  it('lets the clock end a window when its timer is late (a busy event loop)', () => {
    const { sampler, emitted, advance, total } = harness();
    sampler.record('A', 's', 'a1');
    sampler.record('A', 's', 'a2');
    advance(1500, false);
    expect(sampler.record('A', 's', 'a3')).toBe('written a3');
    expect(emitted.map((e) => [e.sample, e.refused])).toEqual([['a1', 1], ['a2', 1], ['a3', 1]]);
    advance(0); // the late timer of the first window fires now: it must not write the window twice
    expect(total()).toBe(3);
  });

  it('writes at most two entries per key and window under a sustained flood, counting every refusal', () => {
    const { sampler, emitted, advance, total } = harness();
    for (let n = 0; n < 10_000; n++) {
      sampler.record('A', `s${n % 50}`, `a${n}`);
      advance(1); // 1,000 refusals a second for ten seconds
    }
    sampler.flush();
    expect(emitted.length).toBeLessThanOrEqual(2 * 11);
    expect(total()).toBe(10_000);
  });

  it('lists at most maxSources sources and counts the refusals of the others', () => {
    const { sampler, emitted, total } = harness(1000, 2);
    sampler.record('A', 'first', 'a0');
    for (const source of ['x', 'y', 'z', 'z', 'x']) sampler.record('A', source, source);
    sampler.flush();
    expect(emitted[1]).toMatchObject({ refused: 5, sources: ['x', 'y'], unlistedSources: 2 });
    expect(total()).toBe(6);
  });

  it('flush writes every pending summary and cancels its timer', () => {
    const { sampler, emitted, advance, total } = harness();
    sampler.record('A', 's', 'a1');
    sampler.record('A', 's', 'a2');
    sampler.flush();
    advance(2000);
    expect(emitted).toHaveLength(2);
    expect(total()).toBe(2);
  });
});
