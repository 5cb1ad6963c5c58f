// CPU time and peak memory of a process, from /proc (Linux only). The
// benchmark samples these around every cell to say which process the CPU
// went to, and reads VmHWM at the end for peak RSS.
import { readdirSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** /proc/<pid>/stat from field 3 (state) on, or undefined if the process is gone. */
function statFields(pid: number | string): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces: fields are counted after its ")".
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

// Indexes into statFields(): proc(5) numbers fields from 1, and the list starts at field 3.
const PPID = 1;
const UTIME = 11;
const STIME = 12;
const CUTIME = 13;
const CSTIME = 14;

/** User + system CPU seconds the process has used so far (undefined if it is gone). */
export function cpuSeconds(pid: number): number | undefined {
  const f = statFields(pid);
  if (!f) return undefined;
  return (Number(f[UTIME]) + Number(f[STIME])) / ticksPerSecond();
}

/**
 * CPU seconds of a server that forks one process per connection (PostgreSQL):
 * the root's own time, the time of the children it has reaped (cutime/cstime:
 * backends and autovacuum workers that exited) and of its live children. No
 * CPU is lost when a backend exits between two samples, and nothing is counted
 * twice (a live child's time reaches the root's cutime only when it is reaped).
 */
export function treeCpuSeconds(rootPid: number): number | undefined {
  const root = statFields(rootPid);
  if (!root) return undefined;
  let ticks = Number(root[UTIME]) + Number(root[STIME]) + Number(root[CUTIME]) + Number(root[CSTIME]);
  const self = String(rootPid);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    if (f?.[PPID] !== self) continue;
    ticks += Number(f[UTIME]) + Number(f[STIME]) + Number(f[CUTIME]) + Number(f[CSTIME]);
  }
  return ticks / ticksPerSecond();
}

/** Peak resident set size (VmHWM) and current RSS in MiB. */
export function memoryMiB(pid: number): { peakRssMiB: number; rssMiB: number } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { peakRssMiB: Math.round(kb("VmHWM") / 102.4) / 10, rssMiB: Math.round(kb("VmRSS") / 102.4) / 10 };
}

export interface MachineInfo {
  readonly nproc: number;
  readonly cpuModel: string;
  readonly memTotalMiB: number;
  readonly loadAvg: string;
  readonly node: string;
}

export function machineInfo(): MachineInfo {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  return {
    nproc: (cpuinfo.match(/^processor\s*:/gm) ?? []).length,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    memTotalMiB: Math.round(Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0) / 1024),
    loadAvg: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    node: process.version,
  };
}

/** CPU seconds the whole machine has spent busy (all processes, all cores) since boot. */
export function machineBusySeconds(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const [, ...fields] = line.trim().split(/\s+/);
  const n = fields.map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (n[3] ?? 0) + (n[4] ?? 0);
  return (total - idle) / ticksPerSecond();
}
