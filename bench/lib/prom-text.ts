// Reading the services' own /metrics (Prometheus text format) from the bench:
// enough of the format for prom-client's output (samples, quoted label values
// with escapes, comments), plus the two things the latency breakdown needs —
// a histogram's sum and count over chosen series, and their change between
// two scrapes. The bench asks the services what they measured instead of
// re-timing them, so the breakdown follows the code as it changes.

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(v: string): string {
  return v.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function parseValue(text: string): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/** Every sample whose name starts with one of `prefixes` (all when none given). */
export function parsePromText(text: string, prefixes: readonly string[] = []): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (prefixes.length > 0 && !prefixes.some((p) => line.startsWith(p))) continue;
    const m = SAMPLE_LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(LABEL_PAIR)) labels[k!] = unescapeLabel(v!);
    out.push({ name: m[1]!, labels, value: parseValue(m[3]!) });
  }
  return out;
}

export type LabelFilter = Readonly<Record<string, string | readonly string[]>>;

function matches(labels: Readonly<Record<string, string>>, filter: LabelFilter): boolean {
  for (const [k, want] of Object.entries(filter)) {
    const v = labels[k];
    if (v === undefined) return false;
    if (typeof want === "string" ? v !== want : !want.includes(v)) return false;
  }
  return true;
}

/** Sum of every sample named `name` whose labels match `filter` (0 when none). */
export function sumSamples(samples: readonly Sample[], name: string, filter: LabelFilter = {}): number {
  let total = 0;
  for (const s of samples) if (s.name === name && matches(s.labels, filter)) total += s.value;
  return total;
}

/** A histogram's observations between two scrapes: their count and the sum of their values. */
export interface HistogramDelta {
  readonly count: number;
  readonly sum: number;
}

/**
 * How histogram `name` (its `_sum` and `_count` series, summed over every
 * series matching `filter` and over every scraped process) grew between the
 * `before` and `after` scrapes. A process restarted in between would make it
 * negative: that reads as nothing observed.
 */
export function histogramDelta(
  before: readonly (readonly Sample[])[],
  after: readonly (readonly Sample[])[],
  name: string,
  filter: LabelFilter = {},
): HistogramDelta {
  const total = (scrapes: readonly (readonly Sample[])[], suffix: string) =>
    scrapes.reduce((a, s) => a + sumSamples(s, `${name}${suffix}`, filter), 0);
  const count = total(after, "_count") - total(before, "_count");
  const sum = total(after, "_sum") - total(before, "_sum");
  return count > 0 && sum >= 0 ? { count, sum } : { count: 0, sum: 0 };
}

/** Mean of the observations in milliseconds (histograms here are in seconds), NaN when there were none. */
export function meanMs(d: HistogramDelta): number {
  return d.count > 0 ? (d.sum / d.count) * 1000 : Number.NaN;
}

const SCRAPE_TIMEOUT_MS = 5_000;

/** GET http://127.0.0.1:<port>/metrics, keeping only the samples named with `prefixes`. */
export async function scrape(port: number, prefixes: readonly string[]): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`/metrics on port ${port} answered ${res.status}`);
  return parsePromText(await res.text(), prefixes);
}
