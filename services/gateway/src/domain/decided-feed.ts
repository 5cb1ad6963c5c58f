// Wakes ListTransactions followers when a decision is logged. It carries no
// data: followers re-read the log after their last sequence, so a slow one
// needs no queue and never misses a txn.
export interface DecidedFeed {
  /** Increments on every notify(). */
  readonly version: number;
  notify(): void;
  /** Resolves once version > seenVersion (at once if it already is), or when the signal aborts. */
  next(seenVersion: number, signal: AbortSignal): Promise<void>;
}

export function createDecidedFeed(): DecidedFeed {
  let version = 0;
  const waiters = new Set<() => void>();
  return {
    get version() {
      return version;
    },
    notify() {
      version++;
      const woken = [...waiters];
      waiters.clear();
      for (const w of woken) w();
    },
    next(seenVersion, signal) {
      return new Promise<void>((resolve) => {
        if (signal.aborted || version > seenVersion) return resolve();
        const done = () => {
          signal.removeEventListener("abort", done);
          waiters.delete(done);
          resolve();
        };
        waiters.add(done);
        signal.addEventListener("abort", done, { once: true });
      });
    },
  };
}
