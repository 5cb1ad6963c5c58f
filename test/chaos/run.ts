// The chaos runner from the command line; exits 1 on any violation.
//   node --import tsx test/chaos/run.ts --seed 7 --duration 180
//   node --import tsx test/chaos/run.ts --duration 1800 --workers 8 --redis    (nightly)
// Needs the bundles: `node scripts/build.mjs` (make build) first.
import { parseArgs } from "node:util";
import { formatReport, runChaos } from "./chaos.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    duration: { type: "string", default: "180" },
    banks: { type: "string", default: "3" },
    workers: { type: "string", default: "6" },
    redis: { type: "boolean", default: false },
    "check-every": { type: "string", default: "10" },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const report = await runChaos({
  seed,
  durationS: Number(values.duration),
  banks: Number(values.banks),
  workers: Number(values.workers),
  redis: values.redis,
  checkEveryS: Number(values["check-every"]),
  log: (line) => console.log(line),
});
console.log(formatReport(report));
process.exit(report.violations.length === 0 ? 0 : 1);
