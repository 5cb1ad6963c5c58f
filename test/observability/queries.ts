// Every PromQL expression paygate ships: dashboard panel targets, dashboard
// variable queries, recording and alerting rules. Used by the tests here and by
// the real-Prometheus stack test, which runs each one and expects data.
//
//   node --import tsx test/observability/queries.ts          # JSON lines, one query each
//
// Grafana variables are replaced so the result is plain PromQL:
// $__rate_interval / $__interval -> rateInterval (default 1m), $__range -> 1h,
// and every dashboard variable ($service, $bank) -> ".*" (they are only used
// in =~ matchers; queries.test.ts checks that).
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
// The Helm chart is the one source of truth: it ships these very files as
// ConfigMaps and a PrometheusRule (helm can only read files inside the chart).
export const CHART_DIR = join(ROOT, "deploy/helm/paygate");
export const DASHBOARDS_DIR = join(CHART_DIR, "dashboards");
export const RULES_DIR = join(CHART_DIR, "rules");

export type QueryKind = "panel" | "variable" | "record" | "alert";

export interface ShippedQuery {
  /** Path relative to the repo root. */
  readonly file: string;
  /** Human pointer: panel title and refId, variable name, rule name. */
  readonly where: string;
  readonly kind: QueryKind;
  /** As written in the file (Grafana variables included). */
  readonly raw: string;
  /** Plain PromQL, ready for Prometheus or promtool. */
  readonly promql: string;
  /** For record rules: the series name it produces. */
  readonly record?: string;
}

export interface QueryOptions {
  /** What $__rate_interval and $__interval become; at least 4x the scrape interval. */
  readonly rateInterval?: string;
}

interface GrafanaPanel {
  title?: string;
  type?: string;
  targets?: { refId?: string; expr?: string }[];
  panels?: GrafanaPanel[];
}
interface GrafanaVariable {
  name: string;
  type: string;
  query?: string | { query?: string };
  definition?: string;
}
interface GrafanaDashboard {
  panels?: GrafanaPanel[];
  templating?: { list?: GrafanaVariable[] };
}

/** Files shipped for Grafana and Prometheus, sorted (test data excluded). */
export function dashboardFiles(): string[] {
  return readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => join(DASHBOARDS_DIR, f));
}
export function ruleFiles(): string[] {
  return readdirSync(RULES_DIR)
    .filter((f) => /\.ya?ml$/.test(f) && !/\.test\.ya?ml$/.test(f))
    .sort()
    .map((f) => join(RULES_DIR, f));
}

function substitute(expr: string, variables: readonly string[], options: QueryOptions): string {
  const interval = options.rateInterval ?? "1m";
  let out = expr
    .replaceAll("$__rate_interval", interval)
    .replaceAll("${__rate_interval}", interval)
    .replaceAll("$__interval", interval)
    .replaceAll("$__range", "1h");
  for (const v of variables) out = out.replaceAll(`\${${v}}`, ".*").replaceAll(new RegExp(`\\$${v}\\b`, "g"), ".*");
  return out;
}

/** Grafana's `label_values(metric, label)` as PromQL returning the same label values. */
export function variableToPromql(query: string): string {
  const m = /^\s*label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/.exec(query);
  if (m) return `group by (${m[2]}) (${m[1]})`;
  const q = /^\s*query_result\(\s*(.+)\s*\)\s*$/.exec(query);
  if (q) return q[1]!;
  throw new Error(`unsupported Grafana variable query (use label_values(metric, label)): ${query}`);
}

export function dashboardQueries(file: string, options: QueryOptions = {}): ShippedQuery[] {
  const dashboard = JSON.parse(readFileSync(file, "utf8")) as GrafanaDashboard;
  const rel = relative(ROOT, file);
  const variables = (dashboard.templating?.list ?? []).map((v) => v.name);
  const out: ShippedQuery[] = [];
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const raw = typeof v.query === "string" ? v.query : (v.query?.query ?? v.definition ?? "");
    out.push({
      file: rel,
      where: `variable $${v.name}`,
      kind: "variable",
      raw,
      promql: substitute(variableToPromql(raw), variables, options),
    });
  }
  const walk = (panels: GrafanaPanel[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) {
        if (!t.expr) continue;
        out.push({
          file: rel,
          where: `panel "${p.title ?? "?"}" target ${t.refId ?? "?"}`,
          kind: "panel",
          raw: t.expr,
          promql: substitute(t.expr, variables, options),
        });
      }
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

interface RuleFile {
  groups?: { name: string; rules?: { record?: string; alert?: string; expr: string | number }[] }[];
}

export function ruleQueries(file: string): ShippedQuery[] {
  const doc = parse(readFileSync(file, "utf8")) as RuleFile;
  const rel = relative(ROOT, file);
  const out: ShippedQuery[] = [];
  for (const g of doc.groups ?? []) {
    for (const r of g.rules ?? []) {
      const expr = String(r.expr).trim();
      if (r.record)
        out.push({
          file: rel,
          where: `group ${g.name} record ${r.record}`,
          kind: "record",
          raw: expr,
          promql: expr,
          record: r.record,
        });
      else out.push({ file: rel, where: `group ${g.name} alert ${r.alert}`, kind: "alert", raw: expr, promql: expr });
    }
  }
  return out;
}

/** Every query in every shipped dashboard and rule file. */
export function allQueries(options: QueryOptions = {}): ShippedQuery[] {
  return [
    ...dashboardFiles().flatMap((f) => dashboardQueries(f, options)),
    ...ruleFiles().flatMap((f) => ruleQueries(f)),
  ];
}

/** The names recorded by the shipped rule files. */
export function recordedNames(): Set<string> {
  return new Set(
    ruleFiles()
      .flatMap((f) => ruleQueries(f))
      .flatMap((q) => (q.record ? [q.record] : [])),
  );
}

// ------------------------------------------------------ metric names in PromQL

const AGGREGATIONS = new Set([
  "sum",
  "min",
  "max",
  "avg",
  "group",
  "stddev",
  "stdvar",
  "count",
  "count_values",
  "bottomk",
  "topk",
  "quantile",
  "limitk",
  "limit_ratio",
]);
const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "offset",
  "and",
  "or",
  "unless",
  "atan2",
  "inf",
  "nan",
]);
const LABEL_LIST_KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);

export interface Selector {
  readonly name: string;
  /** `name{matchers}` exactly as written (no range). */
  readonly text: string;
}

/**
 * The series selectors of a PromQL expression (bare metric names: this
 * codebase never writes {__name__=...}). A small scanner, not a parser: it
 * skips strings, label matchers and ranges, and keeps identifiers that are not
 * functions, aggregations, keywords or label lists.
 */
export function selectors(promql: string): Selector[] {
  // Blank string contents (same length), so braces or brackets inside label values cannot confuse the scan.
  const s = promql.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, (m) => `"${" ".repeat(m.length - 2)}"`);
  const out: Selector[] = [];
  const token =
    /([a-zA-Z_:][a-zA-Z0-9_:]*)|(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|w|y)*|0x[0-9a-fA-F]+)|(\()|(\))|(\{)|(\[)|(\S)/g;
  let skipList = false; // the next (...) is a label list
  let listDepth = 0;
  let m: RegExpExecArray | null;
  const skipTo = (close: string) => {
    const at = s.indexOf(close, token.lastIndex);
    if (at < 0) throw new Error(`unbalanced ${close} in ${promql}`);
    token.lastIndex = at + 1;
    return at;
  };
  while ((m = token.exec(s))) {
    const [, ident, , open, close, brace, bracket] = m;
    if (brace) {
      skipTo("}"); // matchers of a selector without a metric name
      continue;
    }
    if (bracket) {
      skipTo("]");
      continue;
    }
    if (open) {
      if (skipList) {
        listDepth = 1;
        skipList = false;
      } else if (listDepth > 0) listDepth += 1;
      continue;
    }
    if (close) {
      if (listDepth > 0) listDepth -= 1;
      continue;
    }
    if (!ident || listDepth > 0) continue;
    const rest = s.slice(token.lastIndex);
    const lower = ident.toLowerCase();
    if (LABEL_LIST_KEYWORDS.has(lower)) {
      // group_left/group_right may have no list; by/on/... always do.
      skipList = /^\s*\(/.test(rest);
      continue;
    }
    if (KEYWORDS.has(lower) || AGGREGATIONS.has(ident)) continue;
    if (/^\s*\(/.test(rest)) continue; // a function call
    const start = m.index;
    const matchers = /^\s*\{/.exec(rest);
    const end = matchers ? skipTo("}") + 1 : token.lastIndex;
    out.push({ name: ident, text: promql.slice(start, end) });
  }
  return out;
}

/** The metric names a PromQL expression reads, sorted and unique. */
export function metricNames(promql: string): string[] {
  return [...new Set(selectors(promql).map((x) => x.name))].sort();
}

/**
 * What "returns data" means for an alert: its expression returns nothing while
 * all is well, so instead every series it reads must exist.
 */
export function alertProbes(q: ShippedQuery): string[] {
  return [...new Set(selectors(q.promql).map((x) => x.text))];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const q of allQueries()) process.stdout.write(`${JSON.stringify(q)}\n`);
}
