// How a bench run names itself in its results: a file-safe UTC stamp of its
// start (2026-01-02T03-04-05Z) and the command that reproduces it, as typed
// (through make, with the arguments in make's variable, or directly).

/** A file-name-safe UTC stamp, to the second. */
export function runStamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[:.]/g, "-")
    .replace(/-\d{3}Z$/, "Z");
}

/** The command line that ran this script, with this process's arguments. */
export function reproduceCommand(o: {
  readonly makeTarget: string;
  readonly makeVar: string;
  readonly script: string;
}): string {
  const argv = process.argv.slice(2).join(" ");
  return process.env.MAKELEVEL
    ? `make ${o.makeTarget}${argv ? ` ${o.makeVar}="${argv}"` : ""}`
    : `node --import tsx ${o.script}${argv ? ` ${argv}` : ""}`;
}
