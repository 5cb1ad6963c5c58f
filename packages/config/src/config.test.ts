import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, createEnvReader } from "./index.js";

test("every problem is reported together", () => {
  const r = createEnvReader("bank", { PORT: "abc", TIMEOUT_MS: "5", FLAG: "maybe", PEERS: "a=1,b" });
  r.int("PORT", 1);
  r.int("TIMEOUT_MS", 10, { min: 10 });
  r.bool("FLAG", false);
  r.map("PEERS");
  r.string("NAME");
  assert.throws(() => r.finish({}), (e: unknown) => e instanceof ConfigError && e.problems.length === 5);
});

test("defaults apply and the result is frozen", () => {
  const r = createEnvReader("bank", { PORT: "7", PEERS: "a=x, b=y" });
  const cfg = r.finish({ port: r.int("PORT", 1), peers: r.map("PEERS"), name: r.string("NAME", "bank-a") });
  assert.equal(cfg.port, 7);
  assert.equal(cfg.name, "bank-a");
  assert.deepEqual([...cfg.peers], [["a", "x"], ["b", "y"]]);
  assert.ok(Object.isFrozen(cfg));
});
