// A real redis-server per test suite: its own free port and temp dir, no
// persistence unless asked, and the failures tests need (kill -9, restart on
// the same port, FLUSHALL). Commands go through redis-cli so this helper
// shares no client code with the gateway it is testing.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./processes.js";
import { untilReadyLine } from "./ready-line.js";

const run = promisify(execFile);
const START_TIMEOUT_MS = 10_000;
const OUTPUT_KEPT_CHARS = 64_000;

export interface RedisServerOptions {
  /** appendonly yes + appendfsync always: data survives kill -9 (default: nothing persists). */
  readonly appendOnly?: boolean;
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private output = "";

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly options: RedisServerOptions,
  ) {}

  /** Starts redis-server on a free port and resolves once it accepts connections. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), mkdtempSync(join(tmpdir(), "paygate-redis-")), options);
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  private async launch(): Promise<void> {
    if (this.child) throw new Error("redis-server is already running");
    const args = [
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--dir",
      this.dir,
      "--save",
      "",
      "--appendonly",
      this.options.appendOnly ? "yes" : "no",
      ...(this.options.appendOnly ? ["--appendfsync", "always"] : []),
      "--protected-mode",
      "no",
      "--daemonize",
      "no",
      "--logfile",
      "",
    ];
    let child: ChildProcess;
    try {
      child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      throw new Error(`cannot start redis-server (install it: scripts/system-deps.sh): ${String(e)}`);
    }
    this.child = child;
    this.output = "";
    const ready = untilReadyLine(child, {
      name: "redis-server",
      readyText: "Ready to accept connections",
      timeoutMs: START_TIMEOUT_MS,
      onOutput: (chunk) => (this.output = (this.output + chunk).slice(-OUTPUT_KEPT_CHARS)),
      recentOutput: () => this.output,
      spawnHint: "install it: scripts/system-deps.sh",
    });
    child.once("exit", () => {
      if (this.child === child) this.child = undefined;
    });
    try {
      await ready;
    } catch (e) {
      child.kill("SIGKILL");
      this.child = undefined;
      throw e;
    }
  }

  /** kill -9: no shutdown save, connections drop at once. */
  async crash(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGKILL");
    await exited;
    this.child = undefined;
  }

  /** Starts it again on the same port and dir (empty unless appendOnly). */
  async restart(): Promise<void> {
    await this.crash();
    await this.launch();
  }

  /** Runs one command with redis-cli and returns its raw reply text (trailing newline removed). */
  async command(...args: string[]): Promise<string> {
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), "--raw", ...args]);
    return stdout.replace(/\n$/, "");
  }

  /** The value of a key, or undefined. */
  async get(key: string): Promise<string | undefined> {
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), "--raw", "GET", key]);
    const v = stdout.replace(/\n$/, "");
    return v === "" ? undefined : v;
  }

  async keys(pattern = "*"): Promise<string[]> {
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), "--raw", "KEYS", pattern]);
    return stdout.split("\n").filter((k) => k !== "");
  }

  async flushAll(): Promise<void> {
    const reply = await this.command("FLUSHALL");
    if (reply !== "OK") throw new Error(`FLUSHALL answered ${reply}`);
  }

  async close(): Promise<void> {
    await this.crash();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
