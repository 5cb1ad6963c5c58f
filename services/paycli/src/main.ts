// paycli's process entry: the only place that reads process.env and argv.
// Run as `node dist/paycli.js ...` (bundled) or `node --import tsx services/paycli/src/main.ts ...`.
import { homedir } from "node:os";
import { runCli } from "./cli.js";

const controller = new AbortController();
let interrupts = 0;
const onSignal = (signal: NodeJS.Signals) => {
  interrupts++;
  // First Ctrl-C: let `sync --watch` / `history --follow` finish the send in
  // flight and record it. Second: leave now — a claimed entry is taken over
  // by the next run, with the same key.
  if (interrupts > 1) process.exit(signal === "SIGINT" ? 130 : 143);
  controller.abort();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

const code = await runCli({
  argv: process.argv.slice(2),
  env: process.env,
  cwd: process.cwd(),
  homeDir: homedir(),
  io: { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
  signal: controller.signal,
});
// The HTTP/2 session to the gateway would keep the event loop alive until its
// idle timeout; everything paycli owes is written (SQLite fsync'd, stdout
// flushed below), so end now.
process.exitCode = code;
await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
process.exit(code);
