import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface Polled<T> {
  readonly data: T | undefined;
  readonly error: unknown;
  readonly reload: () => Promise<void>;
}

/**
 * Loads `load()` now and again every `intervalMs` (0: once) while the component is shown. A slow answer
 * never overwrites a newer one, and nothing is polled after the page is left.
 */
export function usePolled<T>(load: () => Promise<T>, intervalMs: number, inputs: readonly unknown[]): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const reload = useCallback(async () => {
    const mine = ++generation.current;
    try {
      const value = await loadRef.current();
      if (mine === generation.current) {
        setData(value);
        setError(undefined);
      }
    } catch (caught) {
      if (mine === generation.current) setError(caught);
    }
  }, []);

  useEffect(() => {
    setData(undefined);
    void reload();
    if (intervalMs <= 0) return () => void (generation.current += 1);
    const timer = setInterval(() => void reload(), intervalMs);
    return () => {
      clearInterval(timer);
      generation.current += 1;
    };
  }, inputs);

  return { data, error, reload };
}
