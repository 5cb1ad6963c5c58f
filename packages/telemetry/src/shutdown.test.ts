import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { recordingLogger } from "@paygate/testkit";
import { onShutdownSignals } from "./shutdown.js";

/** A stand-in process: signals are emitted by the test, exit codes recorded. */
function fakeProcess() {
  const signals = new EventEmitter();
  const codes: number[] = [];
  let exited: () => void = () => {};
  const exitedOnce = new Promise<void>((resolve) => (exited = resolve));
  return { signals, codes, exitedOnce, exit: (code: number) => (codes.push(code), exited()) };
}

test("first signal: withdraws readiness before anything is awaited, runs stop once, logs, exits 0", async () => {
  const { logger, lines } = recordingLogger();
  const p = fakeProcess();
  let ready = true;
  const calls: string[] = [];
  let release: () => void = () => {};
  onShutdownSignals(
    logger,
    async (signal) => {
      ready = false;
      calls.push(`stop ${signal}`);
      await new Promise<void>((resolve) => (release = resolve));
      calls.push("closed");
    },
    { process: p.signals, exit: p.exit },
  );
  assert.equal(p.signals.listenerCount("SIGTERM"), 1);
  assert.equal(p.signals.listenerCount("SIGINT"), 1);

  p.signals.emit("SIGTERM", "SIGTERM");
  assert.equal(ready, false, "readiness withdrawn synchronously");
  // A second Ctrl-C (or the supervisor repeating itself) must not restart or cut the drain.
  p.signals.emit("SIGINT", "SIGINT");
  p.signals.emit("SIGTERM", "SIGTERM");
  assert.deepEqual(calls, ["stop SIGTERM"]);
  assert.deepEqual(p.codes, [], "no exit while stop is still running");

  release();
  await p.exitedOnce;
  assert.deepEqual(calls, ["stop SIGTERM", "closed"]);
  assert.deepEqual(p.codes, [0]);
  assert.deepEqual(lines, [
    { level: "info", obj: { signal: "SIGTERM" }, msg: "shutting down" },
    { level: "info", obj: {}, msg: "stopped" },
  ]);
});

test("a failing close step: logs the cause as an unclean shutdown and exits 1", async () => {
  const { logger, lines } = recordingLogger();
  const p = fakeProcess();
  onShutdownSignals(logger, async () => Promise.reject(new Error("database is locked")), {
    process: p.signals,
    exit: p.exit,
  });
  p.signals.emit("SIGINT", "SIGINT");
  await p.exitedOnce;
  assert.deepEqual(p.codes, [1]);
  assert.deepEqual(lines, [
    { level: "info", obj: { signal: "SIGINT" }, msg: "shutting down" },
    { level: "error", obj: { err: "database is locked" }, msg: "unclean shutdown" },
  ]);
});

test("a stop that throws before returning a promise is unclean too", async () => {
  const { logger, lines } = recordingLogger();
  const p = fakeProcess();
  const stop = (): Promise<void> => {
    throw new Error("boom");
  };
  onShutdownSignals(logger, stop, { process: p.signals, exit: p.exit });
  p.signals.emit("SIGTERM", "SIGTERM");
  await p.exitedOnce;
  assert.deepEqual(p.codes, [1]);
  assert.deepEqual(lines.at(-1), { level: "error", obj: { err: "boom" }, msg: "unclean shutdown" });
});

test("the returned function removes the handlers", () => {
  const { logger } = recordingLogger();
  const p = fakeProcess();
  const remove = onShutdownSignals(logger, async () => {}, {
    process: p.signals,
    exit: p.exit,
    signals: ["SIGTERM", "SIGINT", "SIGHUP"],
  });
  assert.equal(p.signals.listenerCount("SIGHUP"), 1);
  remove();
  for (const s of ["SIGTERM", "SIGINT", "SIGHUP"]) assert.equal(p.signals.listenerCount(s), 0, s);
});

test("real process: SIGTERM runs the close steps and the process exits 0", {
  skip: process.platform === "win32",
}, async () => {
  const shutdownModule = fileURLToPath(new URL("./shutdown.ts", import.meta.url));
  // Stays alive on a timer until the signal; prints each step so the test can follow it.
  const script = `
    import { onShutdownSignals } from ${JSON.stringify(shutdownModule)};
    const logger = { info: (o, m) => console.log(m), error: (o, m) => console.log(m) };
    const keepAlive = setInterval(() => {}, 60_000);
    onShutdownSignals(logger, async () => { clearInterval(keepAlive); await new Promise((r) => setTimeout(r, 20)); console.log("closed"); });
    console.log("listening");
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.setEncoding("utf8");
  const listening = new Promise<void>((resolve) =>
    child.stdout.on("data", (d: string) => {
      out += d;
      if (out.includes("listening")) resolve();
    }),
  );
  const exited = once(child, "exit");
  await listening;
  child.kill("SIGTERM");
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, null, "exited by itself, not killed by the signal");
  assert.equal(code, 0);
  assert.deepEqual(out.trim().split("\n"), ["listening", "shutting down", "closed", "stopped"]);
});
