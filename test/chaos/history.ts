// What happened during a chaos run, kept small: faults, client answers,
// checker findings. On a violation the lines that name the txn or key
// involved (and the faults around them) are the minimal history printed.

export interface HistoryEvent {
  readonly kind: string;
  readonly detail: string;
  readonly key?: string;
  readonly txnId?: string;
}

interface Stamped extends HistoryEvent {
  readonly atMs: number;
}

/** Events kept in memory; older ones are dropped (faults are kept apart, all of them). */
const EVENTS_MAX = 200_000;

export class History {
  private readonly started = Date.now();
  private events: Stamped[] = [];
  private readonly faults: Stamped[] = [];

  add(e: HistoryEvent): void {
    const s = { ...e, atMs: Date.now() - this.started };
    if (e.kind === "fault") this.faults.push(s);
    else {
      this.events.push(s);
      if (this.events.length > EVENTS_MAX) this.events = this.events.slice(-EVENTS_MAX / 2);
    }
  }

  get elapsedMs(): number {
    return Date.now() - this.started;
  }

  /**
   * Lines about these txns/keys (all of them, up to relatedMax), plus the
   * faults within `aroundMs` of them, the nearest first when there are more
   * than the lines left for them.
   */
  minimal(
    txnIds: readonly string[],
    keys: readonly string[],
    linesMax = 100,
    aroundMs = 15_000,
    relatedMax = 60,
  ): string[] {
    let related = this.events.filter((e) => (e.txnId && txnIds.includes(e.txnId)) || (e.key && keys.includes(e.key)));
    const hidden = Math.max(0, related.length - relatedMax);
    if (hidden > 0) related = [...related.slice(0, relatedMax / 2), ...related.slice(-relatedMax / 2)];
    const times = related.map((e) => e.atMs);
    const lo = times.length ? Math.min(...times) - aroundMs : Number.NEGATIVE_INFINITY;
    const hi = times.length ? Math.max(...times) + aroundMs : Number.POSITIVE_INFINITY;
    const distance = (f: Stamped) => (times.length ? Math.min(...times.map((t) => Math.abs(t - f.atMs))) : 0);
    const faults = this.faults
      .filter((f) => f.atMs >= lo && f.atMs <= hi)
      .sort((a, b) => distance(a) - distance(b))
      .slice(0, Math.max(0, linesMax - related.length));
    const lines = [...related, ...faults]
      .sort((a, b) => a.atMs - b.atMs)
      .map(
        (e) =>
          `  +${(e.atMs / 1000).toFixed(3)}s ${e.kind.padEnd(7)} ${e.key ? `${e.key} ` : ""}${e.txnId ? `${e.txnId} ` : ""}${e.detail}`,
      );
    return hidden > 0 ? [...lines, `  (${hidden} more lines about them not shown)`] : lines;
  }
}
