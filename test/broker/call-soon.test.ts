import { describe, expect, it } from 'vitest';
import { callSoon } from '../../broker/call-soon.ts';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('callSoon (one Immediate per loop turn for many callbacks)', () => {
  it('runs callbacks after the current turn, in the order they came', async () => {
    const ran: number[] = [];
    for (let i = 0; i < 1000; i++) callSoon(() => ran.push(i));
    expect(ran).toEqual([]);
    await nextTurn();
    expect(ran).toEqual([...Array(1000).keys()]);
  });

  it('leaves callbacks added by a running callback for a later turn, as setImmediate does', async () => {
    const ran: string[] = [];
    callSoon(() => {
      ran.push('first');
      callSoon(() => ran.push('added'));
    });
    callSoon(() => ran.push('second'));
    await nextTurn();
    expect(ran).toEqual(['first', 'second']);
    await nextTurn();
    expect(ran).toEqual(['first', 'second', 'added']);
  });

  it('still runs the rest of a batch when one callback throws', async () => {
    const errors: unknown[] = [];
    const onError = (error: unknown) => errors.push(error);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onError);
    try {
      const ran: number[] = [];
      callSoon(() => ran.push(1));
      callSoon(() => {
        throw new Error('boom');
      });
      callSoon(() => ran.push(3));
      await nextTurn();
      await nextTurn();
      expect(ran).toEqual([1, 3]);
      expect(errors).toHaveLength(1);
    } finally {
      process.off('uncaughtException', onError);
      for (const listener of listeners) process.on('uncaughtException', listener);
    }
  });
});
