// The simulation's only source of time and ordering: a queue of events keyed
// by (virtual time, insertion order). A step pops one event, runs it, then lets
// every promise continuation it started settle (setImmediate runs only after
// the microtask queue is empty), so the real async domain code runs to its next
// wait on simulated I/O before anything else happens. Nothing reads the wall
// clock, so a seed replays the same history.

export interface SimEvent {
  readonly at: number;
  readonly seq: number;
  /** Node whose process runs the event ("" = the world itself: never frozen). */
  readonly owner: string;
  readonly label: string;
  readonly run: () => void;
  /** Set by cancel(): popped without running (a deadline whose call already answered). */
  cancelled?: boolean;
}

export class Scheduler {
  nowMs = 0;
  private seq = 0;
  private heap: SimEvent[] = [];
  /** Node -> virtual time it thaws at (SIGSTOP: its events wait until then). */
  readonly frozenUntil = new Map<string, number>();

  get size(): number {
    return this.heap.length;
  }

  at(atMs: number, owner: string, label: string, run: () => void): SimEvent {
    const ev: SimEvent = { at: Math.max(atMs, this.nowMs), seq: this.seq++, owner, label, run };
    this.push(ev);
    return ev;
  }

  after(delayMs: number, owner: string, label: string, run: () => void): SimEvent {
    return this.at(this.nowMs + delayMs, owner, label, run);
  }

  /** Pops and runs the next live event; undefined when the queue is empty. */
  async step(): Promise<SimEvent | undefined> {
    let ev = this.pop();
    while (ev?.cancelled) ev = this.pop();
    if (!ev) return undefined;
    this.nowMs = ev.at;
    const thaw = ev.owner === "" ? undefined : this.frozenUntil.get(ev.owner);
    if (thaw !== undefined && thaw > this.nowMs) {
      // A stopped process does nothing; its work runs when it is continued, in order.
      this.push({ ...ev, at: thaw, seq: this.seq++ });
      return ev;
    }
    ev.run();
    await settle();
    return ev;
  }

  /** Events still queued that match a predicate (e.g. messages in flight). */
  count(pred: (e: SimEvent) => boolean): number {
    let n = 0;
    for (const e of this.heap) if (!e.cancelled && pred(e)) n++;
    return n;
  }

  private push(e: SimEvent): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Resolves once every pending microtask (and those they start) has run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
