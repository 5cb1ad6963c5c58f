// promtool and prometheus from Debian's `prometheus` package, installed on
// first use. A test that needs them and cannot get them fails: it never skips.
import { spawnSync } from "node:child_process";

function which(cmd: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Path of promtool; installs the `prometheus` package with apt-get if it is missing. */
export function ensurePromtool(log?: (line: string) => void): string {
  return ensureFromPrometheusPackage("promtool", log);
}

/** Path of the prometheus server binary (same package). */
export function ensurePrometheus(log?: (line: string) => void): string {
  return ensureFromPrometheusPackage("prometheus", log);
}

function ensureFromPrometheusPackage(
  binary: string,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): string {
  const found = which(binary);
  if (found) return found;
  log(
    `${binary} not found: installing Debian's prometheus package (apt-get update && apt-get install -y prometheus) ...`,
  );
  const sudo = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
  for (const args of [["update"], ["install", "-y", "--no-install-recommends", "prometheus"]]) {
    const cmd = [...sudo, "apt-get", ...args];
    log(`$ ${cmd.join(" ")}`);
    // Output goes to our stderr as it happens: the install takes a while and shows progress.
    const r = spawnSync(cmd[0]!, cmd.slice(1), {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    if (r.status !== 0)
      throw new Error(
        `${cmd.join(" ")} failed (status ${r.status}${r.error ? `, ${r.error.message}` : ""}); install promtool (Debian package prometheus) and rerun`,
      );
  }
  const installed = which(binary);
  if (!installed) throw new Error(`apt-get installed prometheus but ${binary} is still not on PATH`);
  log(`${binary} installed at ${installed}`);
  return installed;
}

export interface RunResult {
  readonly status: number | null;
  readonly output: string;
}

export function promtool(path: string, args: string[], cwd?: string): RunResult {
  const r = spawnSync(path, args, { encoding: "utf8", cwd, timeout: 120_000 });
  return { status: r.status, output: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}
