// promtool on everything shipped: the rule files parse, their unit tests
// (alerts firing and staying quiet on synthetic histories) pass, and every
// dashboard query parses as PromQL. Installs promtool if missing; fails, never
// skips, if it cannot.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { stringify } from "yaml";
import { ensurePromtool, promtool } from "./promtool.js";
import { allQueries, RULES_DIR, ruleFiles } from "./queries.js";

let bin: string;
const scratch = mkdtempSync(join(tmpdir(), "paygate-promtool-"));

before(() => {
  bin = ensurePromtool();
});
after(() => rmSync(scratch, { recursive: true, force: true }));

test("promtool check rules: every shipped rule file", () => {
  const files = ruleFiles();
  assert.ok(files.length >= 1);
  for (const file of files) {
    const r = promtool(bin, ["check", "rules", file]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS: \d+ rules found/);
  }
});

test("promtool test rules: the alert unit tests next to the rules", () => {
  const tests = readdirSync(RULES_DIR).filter((f) => /\.test\.ya?ml$/.test(f));
  assert.ok(tests.length >= 1, "rule unit tests exist");
  for (const t of tests) {
    const r = promtool(bin, ["test", "rules", t], RULES_DIR);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  }
});

test("every dashboard query parses as PromQL (checked by promtool as recording rules)", () => {
  const queries = allQueries().filter((q) => q.kind === "panel" || q.kind === "variable");
  assert.ok(queries.length >= 40);
  const file = join(scratch, "dashboards-as-rules.yaml");
  writeFileSync(
    file,
    stringify({
      groups: [
        { name: "dashboards", rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: q.promql })) },
      ],
    }),
  );
  const r = promtool(bin, ["check", "rules", file]);
  assert.equal(r.status, 0, `${r.output}\n${queries.map((q, i) => `${i}: ${q.file} ${q.where}`).join("\n")}`);
  assert.match(r.output, new RegExp(`SUCCESS: ${queries.length} rules found`));
});

test("control: promtool rejects broken PromQL, so the checks above can fail", () => {
  const file = join(scratch, "broken.yaml");
  writeFileSync(
    file,
    stringify({
      groups: [{ name: "broken", rules: [{ record: "x:y", expr: "sum by (le (rate(paygate_transfers_total[5m]))" }] }],
    }),
  );
  const r = promtool(bin, ["check", "rules", file]);
  assert.notEqual(r.status, 0);
});
