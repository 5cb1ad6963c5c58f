// paycli's process entry: the only place that reads process.env and argv.
// Run as `node dist/paycli.js ...` (bundled) or `node --import tsx services/paycli/src/main.ts ...`.
import { homedir } from "node:os";
import { createTraceClientInterceptor, startTracing, type Tracing } from "@paygate/telemetry";
import { runCli } from "./cli.js";

// `paycli --help | head -1`, `paycli history | less` quit early: the reader
// closed the pipe and nothing more can be said, so end quietly, as Unix tools
// do, instead of dying on an unhandled EPIPE. Whatever paycli owes is already
// durable by then (the queue is fsync'd before anything is printed).
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});
process.stderr.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e;
});

// Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; then each call to the gateway
// starts a trace (paycli -> gateway -> banks).
let tracing: Tracing;
try {
  tracing = startTracing({ service: "paycli", endpoint: process.env.OTEL_EXPORTER_OTLP_ENDPOINT });
} catch (e) {
  process.stderr.write(`paycli: ${(e as Error).message}\n`);
  process.exit(2);
}

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
  interceptors: tracing.enabled ? [createTraceClientInterceptor(tracing.tracer)] : [],
});
// Spans wait in a batch queue: export them before exiting (bounded by the exporter's own timeout).
await tracing
  .shutdown()
  .catch((e: unknown) => process.stderr.write(`paycli: could not export traces: ${(e as Error).message}\n`));
// The HTTP/2 session to the gateway would keep the event loop alive until its
// idle timeout; everything paycli owes is written (SQLite fsync'd, stdout
// flushed below), so end now.
process.exitCode = code;
await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
process.exit(code);
