import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRefusalSampler, type RefusalSummary } from '../../broker/refusal-sampler.ts';

describe('createRefusalSampler', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  const collect = () => {
    const written: Array<[string, RefusalSummary]> = [];
    const sampler = createRefusalSampler<'A' | 'B'>((code, summary) => written.push([code, summary]));
    return { written, sampler };
  };

  it('writes the first refusal of a quiet code at once, then one summary per window that counts the rest', () => {
    const { written, sampler } = collect();
    sampler.record('A', { remote: '10.0.0.1', detail: { n: 1 } });
    expect(written).toEqual([['A', { refused: 1, sample: { remote: '10.0.0.1', detail: { n: 1 } }, remotes: ['10.0.0.1'] }]]);
    for (let n = 2; n <= 500; n++) sampler.record('A', { remote: `10.0.0.${n % 3}`, detail: { n } });
    expect(written).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(written).toHaveLength(2);
    // The summary's example is the last refusal it counts (core/audit-sampler.ts).
    expect(written[1]).toEqual(['A', { refused: 499, sample: { remote: '10.0.0.2', detail: { n: 500 } }, remotes: ['10.0.0.2', '10.0.0.0', '10.0.0.1'] }]);
  });

  it('reports the tail of a flood when it stops, so the entries add up to every refusal', () => {
    const { written, sampler } = collect();
    for (let n = 0; n < 10; n++) sampler.record('A', { remote: '10.0.0.1' });
    vi.advanceTimersByTime(5000);
    expect(written.map(([, summary]) => summary.refused)).toEqual([1, 9]);
    // Quiet for a whole window: the next refusal is written at once again.
    sampler.record('A', { remote: '10.0.0.1' });
    expect(written).toHaveLength(3);
  });

  it('keeps codes apart and caps the remotes it lists', () => {
    const { written, sampler } = collect();
    sampler.record('A', { remote: 'x' });
    sampler.record('B', { remote: 'y' });
    for (let n = 0; n < 100; n++) sampler.record('B', { remote: `10.0.${n}.1` });
    vi.advanceTimersByTime(1000);
    expect(written.map(([code, summary]) => [code, summary.refused, summary.remotes.length])).toEqual([
      ['A', 1, 1],
      ['B', 1, 1],
      ['B', 100, 8],
    ]);
  });

  it('flush writes what is counted and stops the timers', () => {
    const { written, sampler } = collect();
    sampler.record('A', { remote: 'x' });
    sampler.record('A', { remote: 'x' });
    sampler.flush();
    expect(written.map(([, summary]) => summary.refused)).toEqual([1, 1]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
