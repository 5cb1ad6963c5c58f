// A private PostgreSQL cluster per test suite (DESIGN.md §3b): its own initdb
// in a temp dir, a free port on 127.0.0.1, the unix socket inside the temp
// dir — never the machine's own server on 5432 — and the failures tests need
// (fast stop and start again, kill -9 and crash recovery, SIGSTOP). Durable
// as production runs it: fsync and synchronous_commit on. Statements go
// through psql, so this helper shares no client code with the gateway.
//
// Every server process is started through setpriv, which execs rather than
// forks, so the spawned child *is* the postmaster (its pid and signals need no
// translation), and with --pdeathsig KILL, so a test process that dies without
// close() (killed runner, Ctrl-C) takes its postmaster with it. initdb and
// postgres refuse to run as root: as root (here and in CI) setpriv also drops
// to the `postgres` OS user that Debian's postgresql package creates.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./processes.js";
import { untilReadyLine } from "./ready-line.js";

const run = promisify(execFile);
const DEBIAN_PG_ROOT = "/usr/lib/postgresql";
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
/** How long kill9(), start() and close() wait for killed cluster processes to be gone. */
const ORPHANS_GONE_TIMEOUT_MS = 5_000;
const SQL_TIMEOUT_MS = 30_000;
const OUTPUT_KEPT_CHARS = 64_000;
const READY_LINE = "database system is ready to accept connections";
// psql -A -t with separators no value of ours contains.
const FIELD_SEP = "\x1f";
const RECORD_SEP = "\x1e";
const DATABASE_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

export interface PostgresServerOptions {
  /** Directory holding initdb, postgres and psql; default: the newest /usr/lib/postgresql/<major>/bin. */
  readonly binDir?: string;
  /** Database created at first start (default "paygate"); a plain lower-case identifier. */
  readonly database?: string;
  /** Extra postgresql.conf lines, values as written there (strings quoted), e.g. { max_connections: "200" }; they win over the defaults here. */
  readonly settings?: Readonly<Record<string, string>>;
}

/** The newest Debian PostgreSQL bin dir that has initdb, or undefined. */
export function findPostgresBinDir(root = DEBIAN_PG_ROOT): string | undefined {
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] === undefined ? undefined : join(root, majors[0], "bin");
}

/** uid/gid to run the server as: the `postgres` OS user when we are root, else ourselves. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch {
    throw new Error(
      "running as root, and initdb/postgres refuse root: the `postgres` OS user is missing (install Debian's postgresql: scripts/system-deps.sh)",
    );
  }
}

/** Exists and is not a zombie (an unreaped zombie holds no shared memory). */
function alive(pid: number): boolean {
  try {
    // "pid (comm) state ...": comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function isPostgresProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim().startsWith("postgres");
  } catch {
    return false;
  }
}

/**
 * Every live process of the cluster in `dataDir`: the postmaster chdirs there
 * and every backend and auxiliary process inherits it, also once orphaned by a
 * dead postmaster (which is how backends linger after a kill -9).
 */
function clusterProcesses(dataDir: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === dataDir && alive(Number(entry))) out.push(Number(entry));
    } catch {
      // Exited while we looked, or not ours to inspect.
    }
  }
  return out;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class PostgresServer {
  private child: ChildProcess | undefined;
  private output = "";
  private readonly user: { uid: number; gid: number } | undefined;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly database: string;

  private constructor(
    readonly port: number,
    /** The temp dir: data/ (the cluster) and sock/ (the unix socket); close() removes it. */
    readonly dir: string,
    readonly binDir: string,
    options: PostgresServerOptions,
  ) {
    this.user = serverUser();
    this.dataDir = join(dir, "data");
    this.socketDir = join(dir, "sock");
    this.database = options.database ?? "paygate";
  }

  /** initdb in a fresh temp dir, start on a free port, create the database; resolves once it accepts connections. */
  static async start(options: PostgresServerOptions = {}): Promise<PostgresServer> {
    const binDir = options.binDir ?? findPostgresBinDir();
    if (binDir === undefined || !existsSync(join(binDir, "initdb"))) {
      throw new Error(
        `no PostgreSQL binaries (looked for ${options.binDir ?? `${DEBIAN_PG_ROOT}/*/bin/initdb`}): install Debian's postgresql (scripts/system-deps.sh)`,
      );
    }
    const database = options.database ?? "paygate";
    if (!DATABASE_PATTERN.test(database))
      throw new Error(`database must match ${DATABASE_PATTERN}, got ${JSON.stringify(database)}`);
    const server = new PostgresServer(await freePort(), mkdtempSync(join(tmpdir(), "paygate-pg-")), binDir, options);
    try {
      await server.init(options.settings ?? {});
      await server.start();
      await server.sql(`CREATE DATABASE ${server.database}`, "postgres");
    } catch (e) {
      await server.close();
      throw e;
    }
    return server;
  }

  /** postgres://postgres@127.0.0.1:PORT/<database>; no password (trust auth on 127.0.0.1, a private test cluster). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${this.database}`;
  }

  /** The postmaster's pid while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** The server's log (stderr), the last 64 KB. */
  get log(): string {
    return this.output;
  }

  /** setpriv: the server user when we are root; always the parent-death signal (see the top). */
  private asServerUser(cmd: string, args: string[]): [string, string[]] {
    const user = this.user ? [`--reuid=${this.user.uid}`, `--regid=${this.user.gid}`, "--clear-groups"] : [];
    return ["setpriv", [...user, "--pdeathsig", "KILL", "--", cmd, ...args]];
  }

  private async init(settings: Readonly<Record<string, string>>): Promise<void> {
    mkdirSync(this.socketDir);
    if (this.user) {
      chownSync(this.dir, this.user.uid, this.user.gid);
      chownSync(this.socketDir, this.user.uid, this.user.gid);
    }
    // initdb's own fsync stays on: skipping it (--no-sync) saved ~50 ms of ~650 here.
    const [cmd, args] = this.asServerUser(join(this.binDir, "initdb"), [
      "-D",
      this.dataDir,
      "-U",
      "postgres",
      "--auth=trust",
      "--encoding=UTF8",
      "--locale=C",
      "--no-instructions",
    ]);
    try {
      await run(cmd, args, { cwd: this.dir, env: { PATH: process.env.PATH ?? "", LC_ALL: "C" } });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(
        `initdb failed in ${this.dataDir} (the postgres user must be able to reach ${tmpdir()}): ${err.stderr ?? err.message}`,
      );
    }
    const conf: Record<string, string> = {
      listen_addresses: "'127.0.0.1'",
      port: String(this.port),
      unix_socket_directories: `'${this.socketDir}'`,
      fsync: "on",
      synchronous_commit: "on",
      full_page_writes: "on",
      ...settings,
    };
    appendFileSync(
      join(this.dataDir, "postgresql.conf"),
      `\n# paygate private test cluster\n${Object.entries(conf)
        .map(([k, v]) => `${k} = ${v}`)
        .join("\n")}\n`,
    );
    // Overwriting keeps the file's owner (postgres).
    writeFileSync(join(this.dataDir, "pg_hba.conf"), "local all all trust\nhost all all 127.0.0.1/32 trust\n");
  }

  /** Starts the postmaster on the same data dir and port (after stop(), kill9(), or from static start()); resolves once it accepts connections (after crash recovery, if any). */
  async start(): Promise<void> {
    if (this.child) throw new Error("postgres is already running");
    // Backends of a postmaster killed from outside (kill -9 of its pid) still hold its shared memory.
    await this.killCluster();
    this.removeStaleLocks();
    const [cmd, args] = this.asServerUser(join(this.binDir, "postgres"), ["-D", this.dataDir]);
    const child = spawn(cmd, args, {
      cwd: this.dir,
      env: { PATH: process.env.PATH ?? "", LC_ALL: "C" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const ready = untilReadyLine(child, {
      name: "postgres",
      readyText: READY_LINE,
      timeoutMs: START_TIMEOUT_MS,
      onOutput: (chunk) => (this.output = (this.output + chunk).slice(-OUTPUT_KEPT_CHARS)),
      recentOutput: () => this.output,
    });
    child.once("exit", () => {
      if (this.child === child) this.child = undefined;
    });
    try {
      await ready;
    } catch (e) {
      await this.kill9();
      throw e;
    }
  }

  /**
   * A postmaster.pid (or socket lock) left by a killed server whose pid is gone
   * or now belongs to another program would make postgres refuse to start.
   * One whose pid is still a live postgres is left alone: postgres reports it.
   */
  private removeStaleLocks(): void {
    const locks = [join(this.dataDir, "postmaster.pid"), join(this.socketDir, `.s.PGSQL.${this.port}.lock`)];
    for (const file of locks) {
      if (!existsSync(file)) continue;
      const pid = Number(readFileSync(file, "utf8").split("\n")[0]);
      if (!Number.isInteger(pid) || pid <= 0 || !alive(pid) || !isPostgresProcess(pid)) unlinkSync(file);
    }
  }

  private async exitOf(child: ChildProcess, timeoutMs: number): Promise<boolean> {
    if (child.exitCode !== null || child.signalCode !== null) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Fast shutdown (SIGINT): open transactions roll back, a checkpoint is written, every backend exits. Falls back to kill9() after 15 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.resume();
    child.kill("SIGINT");
    if (!(await this.exitOf(child, STOP_TIMEOUT_MS))) await this.kill9();
    this.child = undefined;
  }

  /**
   * kill -9 of the server: the postmaster and every process it started, as an
   * OOM kill of the container or a lost node whose disk survives. No
   * checkpoint, no shutdown record: start() crash-recovers from the WAL.
   * (Backends merely orphaned by a dead postmaster would keep the shared
   * memory attached and make the next start refuse, so they die too.)
   */
  async kill9(): Promise<void> {
    const child = this.child;
    await this.killCluster();
    if (child) await this.exitOf(child, STOP_TIMEOUT_MS);
    this.child = undefined;
  }

  /** SIGKILL to every process of this cluster, postmaster first; resolves once none is left. */
  private async killCluster(): Promise<void> {
    const realDataDir = realpathSync(this.dataDir);
    // Stopped first, so it forks nothing between the listing and the kill.
    if (this.child?.pid !== undefined) signal(this.child.pid, "SIGSTOP");
    const deadline = Date.now() + ORPHANS_GONE_TIMEOUT_MS;
    for (let left = clusterProcesses(realDataDir); left.length > 0; left = clusterProcesses(realDataDir)) {
      if (Date.now() > deadline)
        throw new Error(
          `postgres processes ${left.join(", ")} of ${this.dataDir} still alive ${ORPHANS_GONE_TIMEOUT_MS} ms after SIGKILL`,
        );
      for (const pid of left) signal(pid, "SIGKILL");
      await sleep(10);
    }
  }

  /**
   * SIGSTOP: a hung server whose sockets stay open. By default the postmaster
   * and every backend freeze, so established connections hang too;
   * "postmaster" freezes only the postmaster (new connections hang, open ones
   * keep working).
   */
  pause(scope: "server" | "postmaster" = "server"): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    signal(pid, "SIGSTOP");
    if (scope === "postmaster") return;
    // The postmaster is the only process that forks: stopped, the list is complete.
    for (const p of clusterProcesses(realpathSync(this.dataDir))) signal(p, "SIGSTOP");
  }

  /** SIGCONT to every process of the cluster (whatever pause() froze). */
  resume(): void {
    if (this.child?.pid === undefined) return;
    for (const p of clusterProcesses(realpathSync(this.dataDir))) signal(p, "SIGCONT");
  }

  /**
   * Runs `text` with psql (one -c: several statements run in one implicit
   * transaction; the last result comes back) and returns its rows, every value
   * as text (NULL as ""). Rejects with psql's message on any error.
   */
  async sql(text: string, database = this.database): Promise<string[][]> {
    const args = [
      "-X",
      "-q",
      "-A",
      "-t",
      "-v",
      "ON_ERROR_STOP=1",
      "-F",
      FIELD_SEP,
      "-R",
      RECORD_SEP,
      "-h",
      "127.0.0.1",
      "-p",
      String(this.port),
      "-U",
      "postgres",
      "-d",
      database,
      "-c",
      text,
    ];
    let stdout: string;
    try {
      ({ stdout } = await run(join(this.binDir, "psql"), args, {
        timeout: SQL_TIMEOUT_MS,
        env: { PATH: process.env.PATH ?? "", PGCONNECT_TIMEOUT: "5", LC_ALL: "C" },
      }));
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`psql on port ${this.port}: ${(err.stderr ?? "").trim() || err.message}`);
    }
    const body = stdout.replace(/\n$/, "");
    if (body === "") return [];
    return body.split(RECORD_SEP).map((row) => row.split(FIELD_SEP));
  }

  /** Stops the server (fast, else kill -9), kills any backend a dead postmaster left behind, and removes the temp dir. */
  async close(): Promise<void> {
    try {
      await this.stop();
      if (existsSync(this.dataDir)) await this.killCluster();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
