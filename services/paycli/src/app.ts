// What every command gets: the parsed configuration, the local stores, a
// gateway client and the output helpers — each created on first use, so that
// `paycli queue` works with no certificates and `paycli --help` touches no file.
import type { Interceptor } from "@connectrpc/connect";
import type { Command } from "commander";
import type { Env } from "@paygate/config";
import { ConfigError, loadConfig, type FaultPoint, type PaycliConfig } from "./config.js";
import type { Random } from "./domain/backoff.js";
import type { Claim } from "./domain/queue.js";
import {
  createGatewayClient,
  GatewayError,
  TlsSetupError,
  type Failure,
  type GatewayClient,
} from "./gateway-client.js";
import { CliError, ExitCode, printableWriter, toJson, type Writer } from "./output.js";
import { createQueueRunner, type QueueRunner } from "./queue-runner.js";
import { openQueueStore, type QueueStore } from "./store/queue-store.js";
import { createSessionStore, type Session, type SessionStore } from "./store/session-store.js";

export interface Stdin {
  readonly isTTY?: boolean | undefined;
  setRawMode?(mode: boolean): unknown;
  on(event: "data", listener: (chunk: Buffer | string) => void): unknown;
  off(event: "data", listener: (chunk: Buffer | string) => void): unknown;
  resume(): unknown;
  pause(): unknown;
  setEncoding?(encoding: BufferEncoding): unknown;
}

export interface CliIo {
  readonly stdout: Writer;
  readonly stderr: Writer;
  readonly stdin: Stdin;
}

/** Everything outside paycli that a run touches; tests replace any of it. */
export interface RunOptions {
  readonly argv: readonly string[];
  readonly env: Env;
  readonly cwd: string;
  readonly homeDir: string;
  readonly io: CliIo;
  /** Aborted on Ctrl-C: `sync --watch` and `history --follow` stop cleanly. */
  readonly signal?: AbortSignal;
  readonly now?: () => number;
  readonly random?: Random;
  readonly pid?: number;
  readonly claimAlive?: (claim: Claim) => boolean;
  /** Called at an armed PAYCLI_FAULTPOINT; the default SIGKILLs this process. */
  readonly crash?: (point: FaultPoint) => void;
  readonly sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** Added to every gateway transport (main.ts: the trace client interceptor). */
  readonly interceptors?: readonly Interceptor[];
}

export interface GlobalFlags {
  readonly json?: boolean;
  readonly gateway?: string;
  readonly ca?: string;
  readonly cert?: string;
  readonly keyFile?: string;
}

export interface App {
  readonly io: CliIo;
  readonly env: Env;
  readonly signal: AbortSignal | undefined;
  readonly now: () => number;
  readonly random: Random;
  readonly pid: number;
  readonly sleep: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** Set by the command that ran; returned by runCli. */
  exitCode: ExitCode;
  /** Called by each action with its Command, to see the global flags. */
  use(cmd: Command): void;
  readonly json: boolean;
  config(): PaycliConfig;
  sessions(): SessionStore;
  /** The saved session, or a CliError telling the user to log in. */
  requireSession(): Session;
  queue(): QueueStore;
  /** A client for the configured gateway; `token` null means no session (Login). */
  gateway(token: string | null): GatewayClient;
  runner(token: string): QueueRunner;
  /**
   * The result: one JSON document on stdout with --json, else the text (on
   * stderr for a decline or a queued payment, so it shows even when stdout is piped).
   */
  print(json: unknown, text: string, stream?: "stdout" | "stderr"): void;
  /** A note for the person at the terminal (stderr, so stdout stays parseable). */
  note(text: string): void;
  close(): void;
}

const PASS_ENTRIES_MAX = 10_000;

export function createApp(o: RunOptions): App {
  let flags: GlobalFlags = {};
  let config: PaycliConfig | undefined;
  let sessions: SessionStore | undefined;
  let store: QueueStore | undefined;
  const clients = new Map<string, GatewayClient>();
  const pid = o.pid ?? process.pid;
  // Everything a command prints goes through these (never o.io directly).
  const io: CliIo = { stdout: printableWriter(o.io.stdout), stderr: printableWriter(o.io.stderr), stdin: o.io.stdin };

  const app: App = {
    io,
    env: o.env,
    signal: o.signal,
    now: o.now ?? Date.now,
    random: o.random ?? Math.random,
    pid,
    sleep: o.sleep ?? abortableSleep,
    exitCode: ExitCode.ok,
    use(cmd) {
      flags = cmd.optsWithGlobals<GlobalFlags>();
    },
    get json() {
      return flags.json === true;
    },
    config() {
      if (config === undefined) {
        try {
          config = loadConfig({
            flags: { gateway: flags.gateway, ca: flags.ca, cert: flags.cert, keyFile: flags.keyFile },
            env: o.env,
            cwd: o.cwd,
            homeDir: o.homeDir,
          });
        } catch (e) {
          if (e instanceof ConfigError) throw new CliError(ExitCode.usage, "invalid_config", e.message);
          throw e;
        }
      }
      return config;
    },
    sessions() {
      sessions ??= createSessionStore(app.config().sessionFile);
      return sessions;
    },
    requireSession() {
      let s: Session | undefined;
      try {
        s = app.sessions().load();
      } catch (e) {
        throw new CliError(ExitCode.failed, "bad_session_file", (e as Error).message);
      }
      if (s === undefined)
        throw new CliError(ExitCode.failed, "not_logged_in", "not logged in: run `paycli login <username>` first");
      return s;
    },
    queue() {
      store ??= openQueueStore(app.config().queueFile, { keepFinishedMax: app.config().keepResultsMax });
      return store;
    },
    gateway(token) {
      const key = token ?? "";
      let client = clients.get(key);
      if (client === undefined) {
        const c = app.config();
        try {
          client = createGatewayClient({
            baseUrl: c.gatewayUrl,
            tls: c.tls,
            timeoutMs: c.timeoutMs,
            token: token ?? undefined,
            interceptors: o.interceptors,
          });
        } catch (e) {
          if (e instanceof TlsSetupError) throw new CliError(ExitCode.usage, "tls_files_unreadable", e.message);
          throw e;
        }
        clients.set(key, client);
      }
      return client;
    },
    runner(token) {
      const c = app.config();
      return createQueueRunner({
        store: app.queue(),
        port: () => app.gateway(token),
        policy: c.queue,
        now: app.now,
        random: app.random,
        pid,
        claimAlive: o.claimAlive ?? ((claim) => claim.pid === pid || processAlive(claim.pid)),
        fault: (point) => {
          if (c.faultPoint === point) (o.crash ?? sigkillSelf)(point);
        },
        passEntriesMax: PASS_ENTRIES_MAX,
      });
    },
    print(json, text, stream = "stdout") {
      if (app.json) io.stdout.write(`${toJson(json)}\n`);
      else if (text.length > 0)
        (stream === "stderr" ? io.stderr : io.stdout).write(text.endsWith("\n") ? text : `${text}\n`);
    },
    note(text) {
      io.stderr.write(text.endsWith("\n") ? text : `${text}\n`);
    },
    close() {
      store?.close();
      store = undefined;
    },
  };
  return app;
}

/** A gateway failure on anything but a payment: tell the user what to do about it. */
export function failureError(e: unknown): CliError {
  if (!(e instanceof GatewayError)) throw e;
  return cliErrorOf(e.failure);
}

/** Awaits a gateway call that is not a payment; a failure becomes the CliError that tells the user what to do. */
export async function asking<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (e) {
    throw failureError(e);
  }
}

export function cliErrorOf(f: Failure): CliError {
  switch (f.kind) {
    case "needs_login":
      return new CliError(
        ExitCode.failed,
        f.reason,
        `${f.message}: your session is missing, expired or revoked — run \`paycli login\``,
      );
    case "transient":
      return new CliError(ExitCode.failed, f.reason, f.message);
    case "rejected":
      return new CliError(
        ExitCode.failed,
        f.reason,
        f.message,
        f.transactionId === null ? {} : { transactionId: f.transactionId },
      );
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, it just is not ours.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function sigkillSelf(point: FaultPoint): void {
  process.stderr.write(`FAULT ${point}: paycli killing itself (pid ${process.pid})\n`);
  process.kill(process.pid, "SIGKILL");
}

export function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

export type { Env };
