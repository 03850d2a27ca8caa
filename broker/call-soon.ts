/**
 * `setImmediate(callback)` for callbacks that come by the thousand per event-loop turn: one Immediate per
 * turn runs them all, in order, instead of one Immediate object (and one trip through Node's timers list)
 * each. broker/outbound-queue-limit.ts releases aedes' emitter this way after every delivery, i.e. once
 * per message and subscriber. Callbacks added while a batch runs wait for the next turn, as with
 * setImmediate, so a callback that adds another cannot hold the loop.
 */
let pending: (() => void)[] = [];
let scheduled = false;

function runPending(): void {
  scheduled = false;
  const batch = pending;
  pending = [];
  let next = 0;
  try {
    while (next < batch.length) (batch[next++] as () => void)();
  } finally {
    // A callback threw (the error goes on to Node as from any Immediate): the rest still run, first in the next turn.
    if (next < batch.length) {
      pending = [...batch.slice(next), ...pending];
      schedule();
    }
  }
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(runPending);
}

export function callSoon(callback: () => void): void {
  pending.push(callback);
  schedule();
}
