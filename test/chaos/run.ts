// The chaos runner from the command line; exits 1 on any violation.
//   node --import tsx test/chaos/run.ts --seed 7 --duration 180                        (3 replicas on PostgreSQL, Redis, cards)
//   node --import tsx test/chaos/run.ts --store sqlite --duration 60                   (one gateway on SQLite, the laptop default)
//   node --import tsx test/chaos/run.ts --duration 1800 --workers 8                     (nightly)
// Needs the bundles: `node scripts/build.mjs` (make build) first, and Debian's
// postgresql and redis-server (scripts/system-deps.sh) for the default mode.
import { parseArgs } from "node:util";
import { formatReport, runChaos } from "./chaos.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    duration: { type: "string", default: "180" },
    store: { type: "string", default: "postgres" },
    gateways: { type: "string" },
    banks: { type: "string", default: "3" },
    workers: { type: "string", default: "6" },
    shoppers: { type: "string", default: "2" },
    redis: { type: "boolean" },
    "no-redis": { type: "boolean", default: false },
    "no-cards": { type: "boolean", default: false },
    "check-every": { type: "string", default: "10" },
  },
});
if (values.store !== "sqlite" && values.store !== "postgres") {
  console.error(`--store must be sqlite or postgres, got ${values.store}`);
  process.exit(2);
}
const store = values.store;
const gateways = Number(values.gateways ?? (store === "postgres" ? 3 : 1));
if (store === "sqlite" && gateways !== 1) {
  console.error(
    "--store sqlite runs exactly one gateway (the SQLite file is one replica's); use --store postgres for more",
  );
  process.exit(2);
}
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const report = await runChaos({
  seed,
  durationS: Number(values.duration),
  store,
  gateways,
  banks: Number(values.banks),
  workers: Number(values.workers),
  // Redis is on by default with PostgreSQL (the fast path in front of the shared store), off with SQLite (make up's setup).
  redis: values["no-redis"] ? false : (values.redis ?? store === "postgres"),
  cards: !values["no-cards"],
  shoppers: Number(values.shoppers),
  checkEveryS: Number(values["check-every"]),
  log: (line) => console.log(line),
});
console.log(formatReport(report));
process.exit(report.violations.length === 0 ? 0 : 1);
