// Reading a username and, without echo, a password from the terminal.
import type { Stdin } from "../app.js";
import { usageError, type Writer } from "../output.js";

const INPUT_LENGTH_MAX = 1024;

/** Reads one line; with `hidden`, typed characters are not echoed (raw mode). */
export function prompt(stdin: Stdin, out: Writer, question: string, hidden: boolean): Promise<string> {
  if (!stdin.isTTY)
    return Promise.reject(usageError("no_tty", "no terminal to ask on: pass the value as an argument or flag"));
  out.write(question);
  return new Promise((resolve, reject) => {
    let text = "";
    const raw = hidden && typeof stdin.setRawMode === "function";
    const finish = (err: Error | null) => {
      stdin.off("data", onData);
      if (raw) stdin.setRawMode?.(false);
      stdin.pause();
      if (hidden) out.write("\n");
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString()) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return finish(null);
        if (ch === "\u0003") return finish(usageError("cancelled", "cancelled"));
        if (ch === "\u007f" || ch === "\b") text = text.slice(0, -1);
        else if (text.length < INPUT_LENGTH_MAX) text += ch;
      }
    };
    if (raw) stdin.setRawMode?.(true);
    stdin.setEncoding?.("utf8");
    stdin.on("data", onData);
    stdin.resume();
  });
}
