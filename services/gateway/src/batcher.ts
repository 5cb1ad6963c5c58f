// Coalesces single calls into batch calls (DESIGN.md §3's participant RPCs,
// issue 6's PrepareBatch / CommitBatch). Items submitted while the event loop
// handles one round of I/O go out together on the next setImmediate; while
// `inflightMax` batches are on the wire, new items wait and leave in one
// batch as soon as one returns. At low load a batch is one item and leaves at
// once; under load batches grow on their own, with no timer to tune.
//
// An item whose signal aborts while queued never leaves; one that aborts on
// the wire is answered at once (its batch's answer for it is then ignored).

export interface BatcherOptions<I, O> {
  /** Sends one batch; answers one output per input, in order. A throw fails every item of the batch. */
  readonly send: (items: readonly I[]) => Promise<readonly O[]>;
  readonly itemsMax: number;
  readonly inflightMax: number;
}

export interface Batcher<I, O> {
  /** Resolves with the item's output; rejects with the batch's error, or `AbortError` if `signal` aborts first. */
  submit(item: I, signal?: AbortSignal): Promise<O>;
  /** Items queued and not yet sent, for tests and metrics. */
  readonly queued: number;
}

interface Pending<I, O> {
  readonly item: I;
  readonly resolve: (o: O) => void;
  readonly reject: (e: unknown) => void;
  readonly signal: AbortSignal | undefined;
  settled: boolean;
}

function abortError(): Error {
  const e = new Error("the call was aborted before its batch answered");
  e.name = "AbortError";
  return e;
}

export function createBatcher<I, O>(o: BatcherOptions<I, O>): Batcher<I, O> {
  if (!(o.itemsMax >= 1 && o.inflightMax >= 1))
    throw new RangeError("a batcher needs itemsMax >= 1 and inflightMax >= 1");
  let queue: Pending<I, O>[] = [];
  let inflight = 0;
  let scheduled = false;

  function settle(p: Pending<I, O>, fn: () => void): void {
    if (p.settled) return;
    p.settled = true;
    fn();
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  }

  function flush(): void {
    scheduled = false;
    while (inflight < o.inflightMax) {
      const live = queue.filter((p) => !p.settled);
      if (live.length === 0) {
        queue = [];
        return;
      }
      const batch = live.slice(0, o.itemsMax);
      queue = live.slice(o.itemsMax);
      inflight++;
      void sendBatch(batch);
    }
  }

  async function sendBatch(batch: Pending<I, O>[]): Promise<void> {
    try {
      const outputs = await o.send(batch.map((p) => p.item));
      if (outputs.length !== batch.length)
        throw new Error(`a batch of ${batch.length} was answered with ${outputs.length} results`);
      batch.forEach((p, i) => settle(p, () => p.resolve(outputs[i]!)));
    } catch (e) {
      for (const p of batch) settle(p, () => p.reject(e));
    } finally {
      inflight--;
      if (queue.length > 0) schedule();
    }
  }

  return {
    submit(item, signal) {
      return new Promise<O>((resolve, reject) => {
        if (signal?.aborted) return reject(abortError());
        const p: Pending<I, O> = { item, resolve, reject, signal, settled: false };
        signal?.addEventListener("abort", () => settle(p, () => reject(abortError())), { once: true });
        queue.push(p);
        schedule();
      });
    },
    get queued() {
      return queue.filter((p) => !p.settled).length;
    },
  };
}
