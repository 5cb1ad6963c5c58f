// Deterministic simulation of two-phase commit: thousands of seeded worlds
// (message loss, duplication, reordering, delays, partitions, kill -9 and
// SIGSTOP of the coordinator, the banks and the credit bureau, the named
// fault points, failed fsyncs at the banks, failed writes to the gateway's
// store, skewed bank clocks) driving the real coordinator, participant, bank,
// resolver, card and orphan-sweep code, with transfers and card payments
// (issue, authorize, settle, void, refund, expiry) interleaved.
//   SIM_SEEDS=50000 SIM_SEED_START=1000000 node --import tsx --test test/sim/sim.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatFailure, runSeeds } from "./seeds.js";
import { CARD_BROKEN, runSimulation, TRANSFER_BROKEN, type Broken } from "./world.js";

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
    assert.ok(
      (r.crashes.coordinator ?? 0) > SEEDS / 10 && (r.crashes["bank-a"] ?? 0) > SEEDS / 10,
      `too few crashes: ${JSON.stringify(r.crashes)}`,
    );
    assert.ok(
      (r.crashes["credit-bureau"] ?? 0) > SEEDS / 20,
      `the credit bureau barely crashed: ${JSON.stringify(r.crashes)}`,
    );
    assert.ok(
      r.dropped > SEEDS && r.duplicated > SEEDS / 2 && r.diskErrors > SEEDS / 20,
      "the network and disk faults barely fired",
    );
    assert.ok(r.gatewayStoreFailures > SEEDS / 20, `the gateway's store barely failed: ${r.gatewayStoreFailures}`);
    // Every way an authorization can end, and the paths between.
    const cards = {
      approved: r.approved,
      declined: r.declined,
      captured: r.captured,
      partialCaptures: r.partialCaptures,
      voided: r.voided,
      expired: r.expired,
      refunds: r.refunds,
    };
    for (const [what, n] of Object.entries(cards))
      assert.ok(n > SEEDS / 50, `too few card outcomes: ${what} ${n} (${JSON.stringify(cards)})`);
    assert.ok(r.captureRetries > SEEDS / 50, `captures barely met a retryable failure: ${r.captureRetries}`);
    assert.ok(r.bankExpiries > SEEDS / 50, `the banks barely expired a hold: ${r.bankExpiries}`);
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
    assert.deepEqual(undo.violations, memory.violations);
  }
});

// Control: the checker must catch deliberately broken protocols, or the
// thousands of green seeds above mean nothing. Each must be caught for what
// it breaks (its own kind of violation), not for something else.
const CONTROL_SEEDS_MAX = 300;
const ATOMICITY = /\(atomicity\)|COMMITTED in the log but|moved -?\d+ without a COMMIT decision|money/;
const CAUGHT_AS: Record<Broken, RegExp> = {
  yes_without_hold: ATOMICITY,
  forget_prepared_on_restart: ATOMICITY,
  timeout_counts_as_yes: ATOMICITY,
  presume_abort_without_logging: ATOMICITY,
  capture_whole_hold: /money created or destroyed|money not conserved|captured \d+ at the gateway, \d+ at/,
  transient_capture_final: /stored FAILED \w+: a transient failure stored as final/,
  refund_skips_reservation: /refunded \d+ \+ reserved \d+ of \d+ captured/,
  hold_released_twice: /holds -?\d+, but its active holds and prepared debits come to|released or captured twice/,
  abort_acked_unsent: /an earlier attempt of the same request, still held the money|was dropped while its round/,
};
for (const broken of [...TRANSFER_BROKEN, ...CARD_BROKEN]) {
  test(`control: the ${broken.replaceAll("_", " ")} bug is caught`, async () => {
    let caught;
    for (let seed = 1; seed <= CONTROL_SEEDS_MAX && !caught; seed++) {
      const r = await runSimulation({ seed, broken });
      if (r.violations.some((v) => CAUGHT_AS[broken].test(v))) caught = r;
    }
    assert.ok(caught, `${CONTROL_SEEDS_MAX} seeds of a broken protocol (${broken}) passed the checker`);
    const text = formatFailure(caught, broken);
    assert.match(text, new RegExp(`seed ${caught.seed}`));
    assert.match(text, /replay: node --import tsx test\/sim\/run.ts --seed \d+ --history --broken/);
  });
}
