// Preload that CPU-profiles a whole process: Node 20 refuses --cpu-prof in
// NODE_OPTIONS, but --import is allowed, so the benchmark starts a service with
//   NODE_OPTIONS="--import /abs/path/bench/lib/cpu-profile.mjs" BENCH_CPU_PROFILE=/abs/out.cpuprofile
// The profile is written when the process exits (SIGTERM -> graceful exit).
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";

const out = process.env.BENCH_CPU_PROFILE;
if (out) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 1000) });
  session.post("Profiler.start");
  // Same-thread inspector sessions answer synchronously, so this works in "exit".
  process.on("exit", () => {
    session.post("Profiler.stop", (err, res) => {
      if (!err && res?.profile) writeFileSync(out, JSON.stringify(res.profile));
    });
  });
}
