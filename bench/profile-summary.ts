// Where a process spent its CPU, from a V8 .cpuprofile (node --cpu-prof):
// self time per function and per module. esbuild bundles mark each source
// module with a "// path/to/module.js" comment line, so a line number in
// dist/<svc>.js maps back to the npm package or source file it came from.
//   node --import tsx bench/profile-summary.ts <file.cpuprofile> [--top 25]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface ProfileRow {
  readonly name: string;
  readonly selfMs: number;
  readonly percent: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  /** Sampled time not spent idle. */
  readonly busyMs: number;
  readonly functions: readonly ProfileRow[];
  readonly modules: readonly ProfileRow[];
}

const bundleIndex = new Map<string, { lines: number[]; names: string[] }>();
/** url of a bundle -> a copy taken when the process started (dist/ may be rebuilt meanwhile). */
let bundleCopies: Readonly<Record<string, string>> = {};

/** Module boundaries of an esbuild bundle: the "// node_modules/x/y.js" lines. */
function moduleOfLine(url: string, line: number): string | undefined {
  let idx = bundleIndex.get(url);
  if (!idx) {
    idx = { lines: [], names: [] };
    try {
      const text = readFileSync(bundleCopies[url] ?? fileURLToPath(url), "utf8").split("\n");
      text.forEach((l, i) => {
        const m = /^\/\/ ((?:node_modules|packages|services)\/\S+)$/.exec(l);
        if (m) {
          idx!.lines.push(i);
          idx!.names.push(m[1]!);
        }
      });
    } catch {
      // Not a readable file: the caller falls back to the URL.
    }
    bundleIndex.set(url, idx);
  }
  let lo = 0;
  let hi = idx.lines.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (idx.lines[mid]! <= line) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found >= 0 ? idx.names[found] : undefined;
}

/** node_modules/@connectrpc/connect/dist/esm/x.js -> @connectrpc/connect; services/gateway/src/x.ts stays whole. */
function packageOf(path: string): string {
  const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  return m ? m[1]! : path;
}

function moduleName(f: CallFrame): string {
  if (!f.url) return f.functionName.startsWith("(") ? f.functionName : "(native)";
  if (f.url.startsWith("node:")) return f.url;
  if (f.url.startsWith("file://")) {
    const mod = f.url.includes("/dist/") ? moduleOfLine(f.url, f.lineNumber) : undefined;
    if (mod) return packageOf(mod);
    const nm = /\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f.url);
    if (nm) return nm[1]!;
    return f.url.replace(/^.*\/(dist|bench|packages|services)\//, "$1/");
  }
  return f.url;
}

export function summarizeProfile(
  profile: CpuProfile,
  top = 25,
  bundles: Readonly<Record<string, string>> = {},
): ProfileSummary {
  bundleCopies = bundles;
  bundleIndex.clear();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    total += us;
    if (f.functionName === "(idle)") {
      idle += us;
      continue;
    }
    const m = moduleName(f);
    const name = f.url ? `${f.functionName || "(anonymous)"} [${m}]` : f.functionName || "(native)";
    fn.set(name, (fn.get(name) ?? 0) + us);
    mod.set(m, (mod.get(m) ?? 0) + us);
  }
  const busy = total - idle;
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({
        name,
        selfMs: Math.round(us / 1000),
        percent: Math.round((us / Math.max(1, busy)) * 1000) / 10,
      }));
  return {
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    functions: rows(fn),
    modules: rows(mod),
  };
}

export function profileMarkdown(label: string, s: ProfileSummary, top = 15): string {
  const table = (title: string, rows: readonly ProfileRow[]) =>
    [
      `| ${title} | self ms | % of busy |`,
      "|---|---:|---:|",
      ...rows.slice(0, top).map((r) => `| \`${r.name.replace(/\|/g, "\\|")}\` | ${r.selfMs} | ${r.percent} |`),
    ].join("\n");
  return [
    `#### CPU profile: ${label} (busy ${s.busyMs} ms of ${s.totalMs} ms sampled)`,
    "",
    table("module", s.modules),
    "",
    table("function", s.functions),
  ].join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  if (positionals.length === 0) {
    process.stderr.write("usage: profile-summary.ts <file.cpuprofile> [--top 25]\n");
    process.exit(2);
  }
  for (const file of positionals) {
    const s = summarizeProfile(JSON.parse(readFileSync(file, "utf8")) as CpuProfile, Number(values.top));
    process.stdout.write(`${profileMarkdown(file, s, Number(values.top))}\n\n`);
  }
}
