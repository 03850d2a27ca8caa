/**
 * aedes' message emitter (mqemitter, and mqemitter-redis built on it) runs at most `concurrency` messages at
 * once and queues the rest. When a message finishes, `released()` starts the next queued one from inside the
 * finishing call; when that one finishes synchronously too (no subscriber matched, or every listener
 * answered at once), it starts the next, and so on: one stack frame chain per queued message. After a
 * flood, with tens of thousands queued, that ends in `RangeError: Maximum call stack size exceeded` and the
 * process dies (as our flood and QoS 0 benchmark runs did: bench/RESULTS.md).
 *
 * This turns the recursion into a loop: a `_do` started while another `_do` is on the stack is queued and
 * run, in order, once the outer one returns. Order is kept (first in, first out), and nothing waits for
 * the event loop, so no newer message can overtake a queued one.
 */
interface EmitterInternals {
  _do(message: unknown, callback: unknown): unknown;
}

export function preventEmitterRecursion(emitter: unknown): void {
  const internals = emitter as EmitterInternals;
  const run = internals._do.bind(internals);
  const pending: [unknown, unknown][] = [];
  let running = false;
  internals._do = (message, callback) => {
    if (running) {
      pending.push([message, callback]);
      return internals;
    }
    running = true;
    try {
      run(message, callback);
      for (let next = pending.shift(); next !== undefined; next = pending.shift()) run(next[0], next[1]);
    } finally {
      running = false;
    }
    return internals;
  };
}
