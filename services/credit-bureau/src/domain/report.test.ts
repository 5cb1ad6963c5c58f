import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { createBureau, parseReports } from "./report.js";

const good = {
  as_of: "2026-01-15T09:00:00Z",
  reports: [
    {
      user_id: "alice",
      score: 780,
      open_credit_minor: 1500000,
      currency: "USD",
      utilisation_bps: 1200,
      delinquencies: 0,
    },
    {
      user_id: "dave",
      score: 480,
      open_credit_minor: "300000",
      currency: "USD",
      utilisation_bps: 9600,
      delinquencies: 5,
      report_time: "2026-01-10T12:00:00Z",
    },
  ],
};

describe("credit reports", () => {
  test("a well-formed file: every field, report_time defaulting to as_of", () => {
    const r = parseReports(good);
    assert.ok(r.ok);
    assert.deepEqual(r.reports.get("alice"), {
      userId: "alice",
      score: 780,
      openCreditMinor: 1_500_000n,
      currency: "USD",
      utilisationBps: 1200,
      delinquencies: 0,
      reportTimeMs: Date.parse("2026-01-15T09:00:00Z"),
    });
    assert.equal(r.reports.get("dave")?.openCreditMinor, 300_000n);
    assert.equal(r.reports.get("dave")?.reportTimeMs, Date.parse("2026-01-10T12:00:00Z"));
  });

  test("every problem is reported at once, with where it is", () => {
    const r = parseReports({
      as_of: "yesterday",
      reports: [
        {
          user_id: "Alice",
          score: 900,
          open_credit_minor: -1,
          currency: "usd",
          utilisation_bps: 10001,
          delinquencies: 1.5,
          colour: "red",
        },
        // A number past 2^53 (as YAML would parse it): the parser must refuse it, not round it.
        {
          user_id: "bob",
          score: 299,
          // biome-ignore lint/correctness/noPrecisionLoss: the literal is imprecise on purpose
          open_credit_minor: 9007199254740993,
          currency: "USD",
          utilisation_bps: 0,
          delinquencies: 0,
        },
        {
          user_id: "bob",
          score: 700,
          open_credit_minor: 0,
          currency: "USD",
          utilisation_bps: 0,
          delinquencies: 0,
          report_time: "soon",
        },
        "carol",
      ],
    });
    assert.ok(!r.ok);
    const expected = [
      "as_of:",
      "reports[0].user_id",
      "reports[0].score",
      "reports[0].open_credit_minor",
      "reports[0].currency",
      "reports[0].utilisation_bps",
      "reports[0].delinquencies",
      'reports[0]: unknown field "colour"',
      "reports[1].score",
      "reports[1].open_credit_minor", // past 2^53 as a number: refused, not rounded
      "reports[2].report_time",
      "reports[3]: a mapping",
    ];
    for (const e of expected)
      assert.ok(
        r.problems.some((p) => p.startsWith(e)),
        `missing problem ${e} in\n${r.problems.join("\n")}`,
      );
    assert.equal(r.problems.length, expected.length, r.problems.join("\n"));
  });

  test("duplicates and an empty list are refused", () => {
    const dup = parseReports({ as_of: good.as_of, reports: [good.reports[0], good.reports[0]] });
    assert.ok(!dup.ok);
    assert.match(dup.problems.join("\n"), /alice appears twice/);
    const empty = parseReports({ as_of: good.as_of, reports: [] });
    assert.ok(!empty.ok);
    assert.ok(!parseReports(null).ok);
    assert.ok(!parseReports([good]).ok);
  });

  test("fetch: a known user, an unknown one, a malformed id", () => {
    const r = parseReports(good);
    assert.ok(r.ok);
    const bureau = createBureau(r.reports);
    const alice = bureau.fetch("alice");
    assert.ok(alice.ok);
    assert.equal(alice.value.score, 780);
    const nobody = bureau.fetch("nobody");
    assert.deepEqual(nobody.ok ? undefined : nobody.reason, "user_not_found");
    for (const bad of ["", "ALICE", "a".repeat(65), "alice\n"]) {
      const x = bureau.fetch(bad);
      assert.equal(x.ok ? undefined : x.reason, "invalid_argument", JSON.stringify(bad));
    }
  });

  test("the shipped data file is valid and has the demo users and a low score", () => {
    const file = fileURLToPath(new URL("../../../../config/credit-bureau.yaml", import.meta.url));
    const r = parseReports(parse(readFileSync(file, "utf8")));
    assert.ok(r.ok, r.ok ? "" : r.problems.join("\n"));
    for (const u of ["alice", "bob", "carol"]) assert.ok((r.reports.get(u)?.score ?? 0) >= 600, u);
    assert.ok([...r.reports.values()].some((x) => x.score < 600 && x.delinquencies > 0));
  });
});
