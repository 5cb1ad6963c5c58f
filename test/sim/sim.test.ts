// Deterministic simulation of two-phase commit: thousands of seeded worlds
// (message loss, duplication, reordering, delays, partitions, kill -9 and
// SIGSTOP of the coordinator and banks, the named fault points, failed fsyncs)
// driving the real coordinator, participant, bank and resolver code.
//   SIM_SEEDS=50000 SIM_SEED_START=1000000 node --import tsx --test test/sim/sim.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatFailure, runSeeds } from "./seeds.js";
import { runSimulation, type Broken } from "./world.js";

const SEEDS = Number(process.env.SIM_SEEDS ?? 5000);
const FROM = Number(process.env.SIM_SEED_START ?? 1);

test(`${SEEDS} seeds from ${FROM}: every invariant holds after every step, and everything settles`, async (t) => {
  const r = await runSeeds({ from: FROM, count: SEEDS, stopOnFailure: true });
  t.diagnostic(JSON.stringify({ ...r, failure: undefined, msPerSeed: +(r.wallMs / r.seedsRun).toFixed(2) }));
  if (r.failure) assert.fail(formatFailure(r.failure));
  assert.equal(r.seedsRun, SEEDS);
  // A simulation that never commits, crashes or loses anything proves nothing.
  if (SEEDS >= 1000) {
    assert.ok(r.committed > SEEDS / 5, `too few commits: ${r.committed}`);
    assert.ok(r.aborted > SEEDS / 5, `too few aborts: ${r.aborted}`);
    assert.ok(r.getDecisions > SEEDS / 20, `in-doubt resolution barely ran: ${r.getDecisions}`);
    assert.ok(r.faultPointCrashes > SEEDS / 20, `fault points barely fired: ${r.faultPointCrashes}`);
    assert.ok((r.crashes.coordinator ?? 0) > SEEDS / 10 && (r.crashes["bank-a"] ?? 0) > SEEDS / 10, `too few crashes: ${JSON.stringify(r.crashes)}`);
    assert.ok(r.dropped > SEEDS && r.duplicated > SEEDS / 2 && r.diskErrors > SEEDS / 20, "the network and disk faults barely fired");
  }
});

test("a seed replays exactly (same history fingerprint)", async () => {
  for (let seed = 1; seed <= 25; seed++) {
    const a = await runSimulation({ seed });
    const b = await runSimulation({ seed });
    assert.equal(a.fingerprint, b.fingerprint, `seed ${seed} is not deterministic`);
    assert.deepEqual(a.stats, b.stats);
  }
});

test("the bank's own memory-ledger gives the same histories as the simulation's undo ledger", async () => {
  for (let seed = 1; seed <= 25; seed++) {
    const undo = await runSimulation({ seed, ledger: "undo" });
    const memory = await runSimulation({ seed, ledger: "memory" });
    assert.equal(undo.fingerprint, memory.fingerprint, `seed ${seed}: the two ledger engines diverge`);
    assert.deepEqual(undo.violations, []);
  }
});

// Control: the checker must catch deliberately broken protocols, or the
// thousands of green seeds above mean nothing.
const CONTROL_SEEDS_MAX = 300;
for (const broken of ["yes_without_hold", "forget_prepared_on_restart", "timeout_counts_as_yes", "presume_abort_without_logging"] as Broken[]) {
  test(`control: a ${broken.replaceAll("_", " ")} bug is caught`, async () => {
    const r = await runSeeds({ from: 1, count: CONTROL_SEEDS_MAX, broken, stopOnFailure: true });
    assert.ok(r.failure, `${CONTROL_SEEDS_MAX} seeds of a broken protocol (${broken}) passed the checker`);
    const text = formatFailure(r.failure, broken);
    assert.match(text, new RegExp(`seed ${r.failure.seed}`));
    assert.match(text, /replay: node --import tsx test\/sim\/run.ts --seed \d+ --history --broken/);
    assert.match(text, /atomicity|COMMITTED|ABORTED|moved|money|logged an error/);
  });
}
