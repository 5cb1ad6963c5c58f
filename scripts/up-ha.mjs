// `make up-ha`: paygate with THREE gateway replicas sharing one PostgreSQL
// (DESIGN.md §3b), on this machine: a private PostgreSQL cluster (initdb under
// ./data/ha/postgres, port 55432, never the machine's own server), a private
// Redis (port 56379), two banks, the bureau and the checkout. One front door
// at https://127.0.0.1:50050 spreads connections over the replicas (as a
// Kubernetes Service does), so paycli, curl and the checkout work unchanged;
// kill replicas and watch nothing break. KEEP_DEAD=gateway-1 leaves a killed
// replica dead, so the others take over its transactions.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join, resolve } from "node:path";
import { localServices } from "./lib/local-services.mjs";
import { createSupervisor } from "./lib/supervisor.mjs";

const root = resolve(new URL("..", import.meta.url).pathname);
const data = resolve(root, "data/ha");
const PG_PORT = 55432;
const REDIS_PORT = 56379;
const FRONT_DOOR_PORT = 50050;
const REPLICAS = 3;
const replicaPort = (i) => 50061 + i;
mkdirSync(data, { recursive: true });

// ---- PostgreSQL: a cluster of our own, made once --------------------------------
const pgRoot = "/usr/lib/postgresql";
const major = existsSync(pgRoot)
  ? readdirSync(pgRoot)
      .filter((v) => existsSync(join(pgRoot, v, "bin/initdb")))
      .sort((a, b) => Number(b) - Number(a))[0]
  : undefined;
if (!major) {
  console.error(
    "make up-ha needs PostgreSQL's server binaries (Debian's postgresql package): run `scripts/system-deps.sh` or `apt-get install postgresql`",
  );
  process.exit(1);
}
const pgBin = join(pgRoot, major, "bin");
const pgData = join(data, "postgres");
const pgSocket = join(data, "postgres-socket");
// initdb and postgres refuse root: as root, run them as Debian's `postgres` user.
const asRoot = process.getuid?.() === 0;
const owner = asRoot
  ? {
      uid: Number(execFileSync("id", ["-u", "postgres"]).toString()),
      gid: Number(execFileSync("id", ["-g", "postgres"]).toString()),
    }
  : undefined;
const asServer = (cmd, args) =>
  owner ? ["setpriv", [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, "--init-groups", cmd, ...args]] : [cmd, args];
mkdirSync(pgSocket, { recursive: true });
if (owner) {
  chownSync(data, owner.uid, owner.gid);
  chownSync(pgSocket, owner.uid, owner.gid);
}
if (!existsSync(join(pgData, "PG_VERSION"))) {
  console.log(`==> initdb ${pgData} (PostgreSQL ${major})`);
  mkdirSync(pgData, { recursive: true, mode: 0o700 });
  if (owner) chownSync(pgData, owner.uid, owner.gid);
  const [cmd, args] = asServer(join(pgBin, "initdb"), ["-D", pgData, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
  execFileSync(cmd, args, { stdio: "inherit" });
}

// ---- the card-number key every replica shares ---------------------------------------
const cardSecret = join(data, "card-secret.key");
if (!existsSync(cardSecret))
  writeFileSync(cardSecret, randomBytes(32).toString("hex") + "\n", { mode: 0o600, flag: "wx" });

// ---- the services -----------------------------------------------------------------------
const replicaUrls = Array.from({ length: REPLICAS }, (_, i) => `https://127.0.0.1:${replicaPort(i)}`);
// Banks ask GetDecision of any replica.
const { banks, edge, gatewayEnv } = localServices({ root, data, coordinatorUrls: replicaUrls });
const [pgCmd, pgArgs] = asServer(join(pgBin, "postgres"), [
  "-D",
  pgData,
  "-p",
  String(PG_PORT),
  "-k",
  pgSocket,
  "-c",
  "listen_addresses=127.0.0.1",
  "-c",
  "fsync=on",
  "-c",
  "synchronous_commit=on",
  "-c",
  "max_connections=100",
]);
const infra = [
  { name: "postgres", command: pgCmd, args: pgArgs, env: {} },
  {
    name: "redis",
    command: "redis-server",
    args: ["--port", String(REDIS_PORT), "--bind", "127.0.0.1", "--dir", data, "--appendonly", "yes", "--save", ""],
    env: {},
  },
];
const gateways = Array.from({ length: REPLICAS }, (_, i) => ({
  name: `gateway-${i}`,
  bundle: "gateway",
  env: {
    ...gatewayEnv,
    GATEWAY_REPLICA: `gateway-${i}`,
    GATEWAY_PORT: String(replicaPort(i)),
    GATEWAY_DATA_DIR: `${data}/gateway-${i}`,
    METRICS_PORT: String(9471 + i),
    DATABASE_URL: `postgres://postgres@127.0.0.1:${PG_PORT}/postgres`,
    REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}`,
    CARD_SECRET_FILE: cardSecret,
  },
}));
const services = [...infra, ...banks, ...gateways, ...edge];
for (const s of services)
  if (s.bundle && !existsSync(`${root}/dist/${s.bundle}.js`)) {
    console.error(`dist/${s.bundle}.js is missing: run \`make build\` first`);
    process.exit(1);
  }

const keepDead = new Set((process.env.KEEP_DEAD ?? "").split(",").filter(Boolean));
const supervisor = createSupervisor({
  root,
  services,
  keepDead,
  readyLine: { postgres: "database system is ready to accept connections", redis: "Ready to accept connections" },
  onAllListening: () => tour(),
});

// ---- the front door: one address, connections spread over the live replicas ---------------
let next = 0;
const frontDoor = net.createServer((client) => {
  client.pause();
  const tryReplica = (left) => {
    if (left === 0) return client.destroy();
    const port = replicaPort(next++ % REPLICAS);
    const upstream = net.connect({ host: "127.0.0.1", port });
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      client.pipe(upstream).pipe(client);
      client.resume();
      upstream.once("close", () => client.destroy());
    });
    // A replica that is down refuses: the next one gets the connection (a Service's endpoints do the same).
    upstream.once("error", () => {
      if (!connected) tryReplica(left - 1);
      else client.destroy();
    });
    client.once("error", () => upstream.destroy());
    client.once("close", () => upstream.destroy());
  };
  tryReplica(REPLICAS);
});

function tour() {
  const pids = [...supervisor.children.entries()]
    .filter(([n]) => n.startsWith("gateway-"))
    .map(([n, c]) => `${n}: ${c.pid}`)
    .join("   ");
  const paycli = "node dist/paycli.js";
  console.log(`
\x1b[1mpaygate is up with ${REPLICAS} gateway replicas on PostgreSQL.\x1b[0m  Data: ./data/ha
  front door  https://127.0.0.1:${FRONT_DOOR_PORT}  -> replicas ${replicaUrls.join(", ")}
  PostgreSQL  postgres://postgres@127.0.0.1:${PG_PORT}/postgres    Redis  redis://127.0.0.1:${REDIS_PORT}
  banks       https://127.0.0.1:50051, :50052   checkout http://127.0.0.1:8080/payment.html (webhooks in: https://127.0.0.1:8443)
  replica pids  ${pids}

The README tour works as it is (paycli and curl go to the front door). Then break things:
  ${paycli} login alice --password alice-demo-2026 && for i in $(seq 1 20); do ${paycli} pay bank-b/2001 0.25 --from bank-a/1001; done
  kill -9 <a replica's pid>       # restarted in 0.5 s; its in-flight txns are recovered
  KEEP_DEAD=gateway-1 make up-ha   # ...or leave it dead: the others abort what it left undecided
  psql postgres://postgres@127.0.0.1:${PG_PORT}/postgres -c 'select replica, lease_until, taken_over_by from replica_leases'
  ${paycli} login admin --password admin-demo-2026 && ${paycli} admin reconcile     # conserved, nothing in doubt
Metrics: replicas :9471-:9473, banks :9465/:9466.   Ctrl-C stops everything (the data stays in ./data/ha).
`);
}

process.on("SIGINT", () => supervisor.shutdown(0, () => frontDoor.close()));
process.on("SIGTERM", () => supervisor.shutdown(0, () => frontDoor.close()));

/** Resolves once something accepts connections on the port (bounded). */
async function reachable(port, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((r) => {
      const s = net.connect({ host: "127.0.0.1", port }, () => {
        s.destroy();
        r(true);
      });
      s.once("error", () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not come up on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// PostgreSQL and Redis first, then the banks (the replicas' recovery reaches them), then the rest.
for (const s of infra) supervisor.start(s);
await reachable(PG_PORT, "PostgreSQL");
await reachable(REDIS_PORT, "Redis");
for (const s of banks) supervisor.start(s);
await new Promise((r) => setTimeout(r, 300));
for (const s of [...gateways, ...edge]) supervisor.start(s);
frontDoor.listen(FRONT_DOOR_PORT, "127.0.0.1");
