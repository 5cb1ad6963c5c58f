import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, createEnvReader, loadConfigOrExit, type Env } from "./index.js";

test("every problem is reported together", () => {
  const r = createEnvReader("bank", { PORT: "abc", TIMEOUT_MS: "5", FLAG: "maybe", PEERS: "a=1,b" });
  r.int("PORT", 1);
  r.int("TIMEOUT_MS", 10, { min: 10 });
  r.bool("FLAG", false);
  r.map("PEERS");
  r.string("NAME");
  assert.throws(
    () => r.finish({}),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 5,
  );
});

test("defaults apply and the result is frozen", () => {
  const r = createEnvReader("bank", { PORT: "7", PEERS: "a=x, b=y" });
  const cfg = r.finish({ port: r.int("PORT", 1), peers: r.map("PEERS"), name: r.string("NAME", "bank-a") });
  assert.equal(cfg.port, 7);
  assert.equal(cfg.name, "bank-a");
  assert.deepEqual(
    [...cfg.peers],
    [
      ["a", "x"],
      ["b", "y"],
    ],
  );
  assert.ok(Object.isFrozen(cfg));
});

test("loadConfigOrExit: the config, or every problem on stderr and exit code 2; other errors propagate", () => {
  const written: string[] = [];
  const exits: number[] = [];
  const proc = {
    stderr: { write: (t: string) => written.push(t) },
    exit: (code: number): never => {
      exits.push(code);
      throw new Error(`exit ${code}`);
    },
  };
  const load = (env: Env) => {
    const r = createEnvReader("svc", env);
    const port = r.int("PORT", 1, { min: 1, max: 65535 });
    return r.finish({ port });
  };
  assert.deepEqual(loadConfigOrExit(load, { PORT: "8080" }, proc), { port: 8080 });
  assert.throws(() => loadConfigOrExit(load, { PORT: "nope" }, proc), /exit 2/);
  assert.deepEqual(exits, [2]);
  assert.match(written.join(""), /^svc: invalid configuration:\n {2}- PORT/);
  assert.throws(
    () =>
      loadConfigOrExit(
        () => {
          throw new TypeError("a bug");
        },
        {},
        proc,
      ),
    TypeError,
  );
  assert.deepEqual(exits, [2], "a bug is not a configuration problem");
});
