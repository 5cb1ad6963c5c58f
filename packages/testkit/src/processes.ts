// Real service processes for end-to-end tests: spawned from the esbuild
// bundles in dist/, configured only through their environment, killed with
// real signals (SIGKILL, SIGSTOP/SIGCONT) and restarted on the same data dir.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { once } from "node:events";
import { repoRoot } from "./paths.js";

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const addr = srv.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export interface ServiceProcessOptions {
  /** Name for messages, e.g. "bank-a". */
  readonly name: string;
  /** Bundle under dist/, e.g. "bank" for dist/bank.js. */
  readonly bundle: string;
  readonly env: Record<string, string>;
  /** How long start() waits for the "listening" line. */
  readonly startTimeoutMs?: number;
}

export interface LogLine {
  readonly [key: string]: unknown;
}

export class ServiceProcess {
  private child: ChildProcess | undefined;
  private exitWaiters: Array<(code: number | null, signal: NodeJS.Signals | null) => void> = [];
  readonly lines: LogLine[] = [];
  readonly rawStderr: string[] = [];
  lastExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  env: Record<string, string>;

  constructor(readonly options: ServiceProcessOptions) {
    this.env = { ...options.env };
  }

  get name(): string {
    return this.options.name;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process and resolves once it logs "listening" (after its recovery). */
  async start(extraEnv: Record<string, string> = {}): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    const script = join(repoRoot, "dist", `${this.options.bundle}.js`);
    if (!existsSync(script)) throw new Error(`${script} is missing: run \`npm run build\` (make test does)`);
    const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...this.env, ...extraEnv };
    const child = spawn(process.execPath, ["--enable-source-maps", script], {
      cwd: repoRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const timeoutMs = this.options.startTimeoutMs ?? 20_000;
    let buffered = "";
    let resolveReady: () => void = () => {};
    const ready = new Promise<void>((r) => (resolveReady = r));
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          line = { msg: "raw", text };
        }
        this.lines.push(line);
        if (line.msg === "listening") resolveReady();
      }
    });
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => this.rawStderr.push(chunk));
    child.on("exit", (code, signal) => {
      this.child = undefined;
      this.lastExit = { code, signal };
      for (const w of this.exitWaiters.splice(0)) w(code, signal);
    });
    const exited = new Promise<never>((_, reject) =>
      this.exitWaiters.push((code, signal) =>
        reject(
          new Error(
            `${this.name} exited (code ${code}, signal ${signal}) before listening:\n${this.rawStderr.join("").slice(-4000)}\n${this.lines
              .slice(-20)
              .map((l) => JSON.stringify(l))
              .join("\n")}`,
          ),
        ),
      ),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name} did not log "listening" within ${timeoutMs} ms:\n${this.rawStderr.join("").slice(-4000)}`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([ready, exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
    exited.catch(() => {});
  }

  /** Resolves when the process has exited (immediately if it is not running). */
  async waitForExit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.child) return this.lastExit ?? { code: null, signal: null };
    return new Promise((resolve) => this.exitWaiters.push((code, signal) => resolve({ code, signal })));
  }

  /** kill -9: no cleanup, no flush. */
  async crash(): Promise<void> {
    if (!this.child) return;
    const exited = this.waitForExit();
    this.child.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM and wait for a clean exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.child) return this.lastExit ?? { code: null, signal: null };
    const exited = this.waitForExit();
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), 15_000);
    const r = await exited;
    clearTimeout(timer);
    return r;
  }

  /** SIGSTOP: the process is frozen, its sockets stay open (a hung peer). */
  freeze(): void {
    this.child?.kill("SIGSTOP");
  }

  thaw(): void {
    this.child?.kill("SIGCONT");
  }

  async restart(extraEnv: Record<string, string> = {}): Promise<void> {
    await this.crash();
    await this.start(extraEnv);
  }

  /** The ops port (/metrics, /healthz, /readyz) from the latest "listening" line (METRICS_PORT=0 picks a free one). */
  get metricsPort(): number {
    const port = this.find("listening").at(-1)?.metricsPort;
    if (typeof port !== "number") throw new Error(`${this.name} has not logged "listening" with a metricsPort`);
    return port;
  }

  /** Log lines whose msg equals `msg` (or all lines matching a predicate). */
  find(pred: string | ((l: LogLine) => boolean)): LogLine[] {
    return this.lines.filter(typeof pred === "string" ? (l) => l.msg === pred : pred);
  }
}
