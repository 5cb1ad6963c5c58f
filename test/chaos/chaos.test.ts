// The CI chaos run: the real stack (gateway, three banks) under kill -9,
// fault points, SIGSTOP, cut/blackholed/delayed/garbled links, with a
// randomized workload, for CHAOS_DURATION_S (default 180) seconds; then the
// checker must find zero violations. The seed is printed (CHAOS_SEED replays
// the same choices). A control run proves the checker can fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatReport, runChaos } from "./chaos.js";

const DURATION_S = Number(process.env.CHAOS_DURATION_S ?? 180);
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** The target: at least 50 crashes in a 3-minute run (scaled for shorter local runs). */
const CRASHES_MIN = Math.ceil((50 * DURATION_S) / 180);

test(`chaos: ${DURATION_S} s of faults, zero violations, at least ${CRASHES_MIN} crashes (seed ${SEED})`, async (t) => {
  const report = await runChaos({ seed: SEED, durationS: DURATION_S, banks: 3, workers: 6, redis: false, checkEveryS: 10, log: (l) => t.diagnostic(l) });
  const text = formatReport(report);
  for (const line of text.split("\n")) t.diagnostic(line);
  assert.deepEqual(report.violations, [], text);
  assert.ok(report.nemesis.crashes >= CRASHES_MIN, `only ${report.nemesis.crashes} crashes (want ${CRASHES_MIN})`);
  // The faults must not have starved the run: money moved and clients got answers.
  assert.ok(report.workload.acknowledged > 0 && report.checker.committed > 0, "nothing committed");
  assert.equal(report.checker.pending, 0);
});

test("control: the checker reports money created behind the system's back and a rewritten decision", async (t) => {
  const report = await runChaos({ seed: SEED, durationS: 10, banks: 2, workers: 3, redis: false, checkEveryS: 5, log: (l) => t.diagnostic(l), tamper: true });
  const all = report.violations.join("\n");
  assert.match(all, /money not conserved|differ from the opening total/, formatReport(report));
  assert.match(all, /decision of .* changed from COMMIT to ABORT|moved money .* decision is ABORT/, formatReport(report));
  assert.match(formatReport(report), new RegExp(`VIOLATION \\(seed ${SEED}\\)`));
});
