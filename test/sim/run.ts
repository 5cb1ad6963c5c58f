// Runs simulation seeds from the command line.
//   node --import tsx test/sim/run.ts --seed 42 [--history]   one seed, its history on demand
//   node --import tsx test/sim/run.ts --from 1 --count 20000    a range (exit 1 on the first violation)
//   ... --broken yes_without_hold                               a deliberately broken variant
//   ... --tolerate 'ALARM|hold_not_found'                       go on past a known finding (hunting for the next)
import { parseArgs } from "node:util";
import { formatFailure, runSeeds } from "./seeds.js";
import { runSimulation, type Broken } from "./world.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    from: { type: "string", default: "1" },
    count: { type: "string", default: "1000" },
    history: { type: "boolean", default: false },
    broken: { type: "string" },
    tolerate: { type: "string" },
  },
});
const broken = values.broken as Broken | undefined;
const extra = { ...(broken ? { broken } : {}), ...(values.tolerate ? { tolerate: new RegExp(values.tolerate) } : {}) };

if (values.seed !== undefined) {
  const r = await runSimulation({ seed: Number(values.seed), ...extra });
  if (values.history) for (const line of r.history) console.log(line);
  console.log(JSON.stringify({ seed: r.seed, fingerprint: r.fingerprint, stats: r.stats }));
  if (r.violations.length > 0) {
    console.error(formatFailure(r));
    process.exit(1);
  }
} else {
  const report = await runSeeds({
    from: Number(values.from),
    count: Number(values.count),
    ...extra,
    stopOnFailure: true,
  });
  console.log(JSON.stringify({ ...report, failure: undefined }, null, 1));
  if (report.failure) {
    console.error(formatFailure(report.failure));
    process.exit(1);
  }
}
