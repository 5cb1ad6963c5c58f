// Waiting for a spawned server (redis-server, postgres) to say it is ready:
// the text it prints once it accepts connections, with its own log as the
// error message when it exits or hangs first.
import type { ChildProcess } from "node:child_process";

export interface ReadyLineOptions {
  /** For messages, e.g. "postgres". */
  readonly name: string;
  /** Printed (stdout or stderr) once the server accepts connections. */
  readonly readyText: string;
  readonly timeoutMs: number;
  /** Every chunk of output, also after ready (so the pipes never fill up). */
  readonly onOutput: (chunk: string) => void;
  /** The server's recent output, for the error message. */
  readonly recentOutput: () => string;
  /** Added to a spawn failure, e.g. how to install the binary. */
  readonly spawnHint?: string;
}

/** Resolves once `readyText` appears in this child's output; rejects if it fails to spawn, exits, or takes longer than timeoutMs. */
export function untilReadyLine(child: ChildProcess, options: ReadyLineOptions): Promise<void> {
  const { name, readyText, timeoutMs } = options;
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`${name} did not get ready within ${timeoutMs} ms:\n${options.recentOutput().slice(-4000)}`)),
      timeoutMs,
    );
    // This launch's output only, and only as much as can hold a split readyText.
    let tail = "";
    const onData = (chunk: string) => {
      options.onOutput(chunk);
      tail = (tail + chunk).slice(-(readyText.length + chunk.length));
      if (tail.includes(readyText)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.stderr!.setEncoding("utf8").on("data", onData);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${name}${options.spawnHint ? ` (${options.spawnHint})` : ""}: ${e.message}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(
          `${name} exited (code ${code}, signal ${signal}) before it was ready:\n${options.recentOutput().slice(-4000)}`,
        ),
      );
    });
  });
}
