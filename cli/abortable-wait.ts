/** Waits `ms`, or less if `signal` aborts first, and never rejects: the polling loops of `audit --follow` and `rotate status --watch`. */
export function waitUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
