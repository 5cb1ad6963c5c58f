// A small supervisor for `make up` and `make up-ha`: runs each service as a
// child process, prints its JSON log lines readably, restarts a process that
// dies (recovery takes over, as Kubernetes would do it) unless told to leave
// it dead, and stops everything on Ctrl-C.
import { spawn } from "node:child_process";

const RESTARTS_MAX = 5;
const COLORS = [36, 35, 33, 34, 32, 31, 93, 96, 95];

/**
 * services: { name, command?, args?, bundle?, env }[] — a bundle runs as `node dist/<bundle>.js`.
 * keepDead: names not to restart (to watch a takeover); onAllListening: runs once every service logged "listening".
 */
export function createSupervisor({ root, services, keepDead = new Set(), onAllListening = () => {}, readyLine = {} }) {
  let stopping = false;
  const children = new Map();
  const ready = new Set();
  let toured = false;
  const color = new Map(services.map((s, i) => [s.name, COLORS[i % COLORS.length]]));
  const width = Math.max(8, ...services.map((s) => s.name.length));

  function listening(name) {
    ready.add(name);
    if (ready.size === services.length && !toured) {
      toured = true;
      onAllListening();
    }
  }

  function show(prefix, line, name) {
    // A plain-text process (PostgreSQL, Redis) says it is ready with a line of its own.
    if (readyLine[name] && line.includes(readyLine[name])) listening(name);
    let j;
    try {
      j = JSON.parse(line);
    } catch {
      console.log(`${prefix} ${line}`);
      return;
    }
    if (j.msg === "listening") {
      console.log(
        `${prefix} listening on ${j.port}${j.metricsPort ? ` (metrics :${j.metricsPort})` : ""}${j.store ? ` store=${j.store}` : ""}`,
      );
      listening(name);
      return;
    }
    if (j.msg === "rpc") {
      if (process.env.QUIET) return;
      const extra = [
        j.caller && `caller=${j.caller}`,
        j.amountMinor && `amount=${j.amountMinor}`,
        j.reason && `reason=${j.reason}`,
      ]
        .filter(Boolean)
        .join(" ");
      console.log(`${prefix} ${j.method} ${j.code} ${j.durationMs}ms ${extra}`);
      return;
    }
    const skip = ["level", "time", "service", "msg", "pid", "hostname"];
    const fields = Object.entries(j)
      .filter(([k]) => !skip.includes(k))
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" ");
    console.log(`${prefix} ${j.level ?? ""} ${j.msg ?? ""} ${fields}`);
  }

  function lines(stream, prefix, name) {
    let buf = "";
    stream.setEncoding("utf8").on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        show(prefix, line, name);
      }
    });
  }

  function start(svc, restarts = 0) {
    const command = svc.command ?? process.execPath;
    const args = svc.args ?? ["--enable-source-maps", `dist/${svc.bundle}.js`];
    const child = spawn(command, args, {
      cwd: root,
      env: { ...process.env, ...svc.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.set(svc.name, child);
    const prefix = `\x1b[${color.get(svc.name) ?? 37}m${svc.name.padEnd(width)}\x1b[0m`;
    lines(child.stdout, prefix, svc.name);
    lines(child.stderr, prefix, svc.name);
    child.on("exit", (code, signal) => {
      children.delete(svc.name);
      if (stopping) return;
      if (keepDead.has(svc.name)) {
        console.error(
          `${prefix} exited (${code ?? signal}); left dead (KEEP_DEAD): the other replicas take over its transactions`,
        );
        return;
      }
      if (restarts >= RESTARTS_MAX) {
        console.error(`${prefix} exited (${code ?? signal}) ${RESTARTS_MAX} times; giving up. See the lines above.`);
        shutdown(1);
        return;
      }
      console.error(`${prefix} exited (${code ?? signal}); restarting (recovery resolves anything in flight)`);
      setTimeout(() => start(svc, restarts + 1), 500);
    });
  }

  function shutdown(code = 0, last = () => {}) {
    if (stopping) return;
    stopping = true;
    console.log("\nstopping...");
    for (const c of children.values()) c.kill("SIGTERM");
    const finish = () => {
      last();
      process.exit(code);
    };
    const deadline = setTimeout(() => {
      for (const c of children.values()) c.kill("SIGKILL");
      finish();
    }, 10_000);
    const check = setInterval(() => {
      if (children.size === 0) {
        clearInterval(check);
        clearTimeout(deadline);
        finish();
      }
    }, 100);
  }

  return { start, shutdown, children };
}
