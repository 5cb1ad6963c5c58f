// The shipped dashboards and rules only use metrics that exist: every name in
// every expression is defined in packages/telemetry/src/metrics.ts, is
// Prometheus's `up`, or is recorded by the shipped rules. Also checks the
// extractor itself and the dashboards' shape (datasource variable, ids).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createBankMetrics, createGatewayMetrics, createMetrics } from "@paygate/telemetry";
import {
  alertProbes,
  allQueries,
  dashboardFiles,
  dashboardQueries,
  metricNames,
  recordedNames,
  ruleFiles,
  ruleQueries,
  selectors,
} from "./queries.js";

/** Every series name a paygate process can export (histograms expanded to _bucket/_sum/_count). */
async function definedNames(): Promise<Set<string>> {
  const { registry } = createMetrics("gateway");
  createGatewayMetrics(registry).reconcileConserved.set(true); // registered on first use
  createBankMetrics(registry, "bank-a");
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    const type = String(m.type); // "counter" | "gauge" | "histogram" | "summary" at runtime
    if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${m.name}${suffix}`);
    else if (type === "summary") for (const suffix of ["", "_sum", "_count"]) names.add(`${m.name}${suffix}`);
    else names.add(m.name);
  }
  return names;
}

test("metricNames: functions, aggregations, label lists, strings, ranges and numbers are not metrics", () => {
  assert.deepEqual(
    metricNames(
      'histogram_quantile(0.99, sum by (le, phase) (rate(paygate_2pc_phase_duration_seconds_bucket{phase=~"a|b"}[5m])))',
    ),
    ["paygate_2pc_phase_duration_seconds_bucket"],
  );
  assert.deepEqual(
    metricNames("sum(rate(a_total[1m])) by (service) / on (service) group_left (bank) b offset 1h > bool 3 * 1e3"),
    ["a_total", "b"],
  );
  assert.deepEqual(
    metricNames(
      '(sum by (service) (rate(x_total{code=~"internal|unknown",m="{[}"}[5m])) or 0 * sum without (code) (y)) / count(up{job=~".*bank.*"} == 0)',
    ),
    ["up", "x_total", "y"],
  );
  assert.deepEqual(
    metricNames(
      "paygate:rpc_server_errors:ratio_rate1h > (14.4 * 0.001) and paygate:rpc_server_errors:ratio_rate5m > 0.0144",
    ),
    ["paygate:rpc_server_errors:ratio_rate1h", "paygate:rpc_server_errors:ratio_rate5m"],
  );
  assert.deepEqual(metricNames("group by (bank) (paygate_bank_prepared_transactions)"), [
    "paygate_bank_prepared_transactions",
  ]);
  assert.deepEqual(metricNames("max_over_time(m[1h:5m]) unless absent(n)"), ["m", "n"]);
});

test("selectors keep their matchers, so alert probes read the same series the alert does", () => {
  assert.deepEqual(selectors('up{job=~".*bank.*"} == 0'), [{ name: "up", text: 'up{job=~".*bank.*"}' }]);
  assert.deepEqual(selectors('increase(x_total{a="}[",b!="c"}[15m]) > 0 and on (a) y'), [
    { name: "x_total", text: 'x_total{a="}[",b!="c"}' },
    { name: "y", text: "y" },
  ]);
  const stuck = allQueries().find((q) => q.where.endsWith("alert InDoubtTransactionsStuck"));
  assert.ok(stuck);
  assert.deepEqual(alertProbes(stuck), [
    "paygate_2pc_in_doubt_oldest_age_seconds",
    "paygate_2pc_prepare_timeout_seconds",
  ]);
});

test("extraction finds every expr in the dashboards and every rule in the rule files", () => {
  for (const file of dashboardFiles()) {
    const text = readFileSync(file, "utf8");
    const exprs = [...text.matchAll(/"expr":/g)].length;
    const variables = (JSON.parse(text) as { templating: { list: { type: string }[] } }).templating.list.filter(
      (v) => v.type === "query",
    ).length;
    const got = dashboardQueries(file);
    assert.ok(exprs >= 10, `${file} has panels`);
    assert.equal(got.filter((q) => q.kind === "panel").length, exprs);
    assert.equal(got.filter((q) => q.kind === "variable").length, variables);
  }
  for (const file of ruleFiles()) {
    const text = readFileSync(file, "utf8");
    const rules = [...text.matchAll(/^\s*- (record|alert):/gm)].length;
    assert.equal(ruleQueries(file).length, rules);
  }
  const all = allQueries({ rateInterval: "30s" });
  assert.ok(all.length >= 60, `${all.length} queries`);
  for (const q of all)
    assert.doesNotMatch(q.promql, /\$/, `${q.file} ${q.where}: no Grafana variable left in ${q.promql}`);
  assert.ok(
    all.some((q) => q.promql.includes("[30s]")),
    "rate interval substituted",
  );
});

test("every metric name in every dashboard and rule is defined in metrics.ts, recorded by a rule, or `up`", async () => {
  const defined = await definedNames();
  const recorded = recordedNames();
  assert.ok(recorded.size >= 5);
  const problems: string[] = [];
  const used = new Set<string>();
  for (const q of allQueries()) {
    const names = metricNames(q.promql);
    if (names.length === 0) problems.push(`${q.file} ${q.where}: no metric in ${q.promql}`);
    for (const n of names) {
      used.add(n);
      if (n === "up" || defined.has(n) || recorded.has(n)) continue;
      problems.push(`${q.file} ${q.where}: ${n} is not defined`);
    }
  }
  assert.deepEqual(problems, []);
  // And the other way, the parts an on-call engineer needs: each is on a dashboard or in a rule.
  for (const n of [
    "paygate_transfers_total",
    "paygate_2pc_in_doubt_transactions",
    "paygate_2pc_redrive_attempts_total",
    "paygate_idempotency_total",
    "paygate_card_authorizations_total",
    "paygate_settlement_lag_seconds_bucket",
    "paygate_bank_fsync_duration_seconds_bucket",
    "paygate_bank_held_minor",
    "paygate_bank_sqlite_bytes",
    "paygate_bank_prepared_transactions",
    "paygate_reconcile_conserved",
    "paygate_rpc_server_duration_seconds_bucket",
    "paygate_rpc_client_duration_seconds_bucket",
  ]) {
    assert.ok(used.has(n), `${n} is shown or alerted on`);
  }
});

test("the checker can fail: an unknown metric is reported", async () => {
  const defined = await definedNames();
  const names = metricNames('sum(rate(paygate_transfer_total{outcome="committed"}[5m]))');
  assert.deepEqual(
    names.filter((n) => !defined.has(n)),
    ["paygate_transfer_total"],
  );
});

test("dashboards: a `datasource` variable of type prometheus, used by every panel; unique ids; variables only in =~", () => {
  for (const file of dashboardFiles()) {
    const d = JSON.parse(readFileSync(file, "utf8")) as {
      uid: string;
      schemaVersion: number;
      templating: { list: { name: string; type: string; query: unknown }[] };
      panels: {
        id: number;
        type: string;
        title: string;
        datasource?: { type: string; uid: string };
        targets?: { datasource?: { uid: string }; expr: string }[];
      }[];
    };
    assert.match(d.uid, /^paygate-/);
    assert.ok(d.schemaVersion >= 36 && d.schemaVersion <= 41, `${file}: schemaVersion ${d.schemaVersion}`);
    const ds = d.templating.list.find((v) => v.name === "datasource");
    assert.deepEqual(
      { type: ds?.type, query: ds?.query },
      { type: "datasource", query: "prometheus" },
      `${file}: datasource variable`,
    );
    const ids = d.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, `${file}: unique panel ids`);
    const variables = d.templating.list.map((v) => v.name).filter((n) => n !== "datasource");
    for (const p of d.panels.filter((x) => x.type !== "row")) {
      assert.deepEqual(
        p.datasource,
        { type: "prometheus", uid: "${datasource}" },
        `${file}: panel "${p.title}" datasource`,
      );
      assert.ok((p.targets ?? []).length > 0, `${file}: panel "${p.title}" has a query`);
      for (const t of p.targets ?? []) {
        assert.equal(t.datasource?.uid, "${datasource}");
        for (const v of variables) {
          for (const use of t.expr.matchAll(new RegExp(`(.{0,3})"\\$${v}"`, "g")))
            assert.equal(use[1]?.slice(-2), "=~", `${file}: "${p.title}" uses $${v} outside =~`);
        }
      }
    }
  }
});
