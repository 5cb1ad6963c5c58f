// A real Prometheus for tests: Debian's binary, a throwaway TSDB, 1 s scrapes
// of 127.0.0.1 targets, paygate's rule files loaded. The stack test and
// prometheus.test.ts both use it.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { stringify } from "yaml";
import { ensurePrometheus } from "./promtool.js";

export interface ScrapeTarget {
  /** Becomes the `job` label; banks' start with "paygate-bank", the gateway's with "paygate-gateway" (see the rules file). */
  readonly job: string;
  /** host:port of the ops server. */
  readonly address: string;
}

export interface PrometheusOptions {
  readonly targets: readonly ScrapeTarget[];
  readonly ruleFiles?: readonly string[];
  /** Default 1 s. */
  readonly scrapeIntervalSeconds?: number;
}

export interface Sample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

export interface Prometheus {
  readonly url: string;
  /** Instant query; a scalar comes back as one sample with no labels. Throws on a PromQL error. */
  query(promql: string): Promise<Sample[]>;
  /** Polls `check` until it returns true, at most attemptsMax times, intervalMs apart. Returns whether it did. */
  waitUntil(check: () => Promise<boolean>, attemptsMax?: number, intervalMs?: number): Promise<boolean>;
  /** Lines Prometheus wrote to stderr (for failure messages). */
  readonly log: string[];
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const LOG_LINES_MAX = 2000;

export async function startPrometheus(options: PrometheusOptions): Promise<Prometheus> {
  const bin = ensurePrometheus();
  const dir = mkdtempSync(join(tmpdir(), "paygate-prometheus-"));
  const interval = `${options.scrapeIntervalSeconds ?? 1}s`;
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    rule_files: [...(options.ruleFiles ?? [])],
    scrape_configs: options.targets.map((t) => ({ job_name: t.job, static_configs: [{ targets: [t.address] }] })),
  };
  writeFileSync(join(dir, "prometheus.yml"), stringify(config));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log: string[] = [];
  const child: ChildProcess = spawn(
    bin,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    log.push(...d.split("\n").filter(Boolean));
    if (log.length > LOG_LINES_MAX) log.splice(0, log.length - LOG_LINES_MAX);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const waitUntil = async (check: () => Promise<boolean>, attemptsMax = 60, intervalMs = 500) => {
    for (let i = 0; i < attemptsMax; i += 1) {
      if (await check().catch(() => false)) return true;
      await sleep(intervalMs);
    }
    return false;
  };
  const close = async () => {
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };

  const ready = await waitUntil(async () => child.exitCode === null && (await fetch(`${url}/-/ready`)).ok, 100, 200);
  if (!ready) {
    await close();
    throw new Error(`prometheus did not become ready on ${url}:\n${log.join("\n")}`);
  }

  return {
    url,
    log,
    waitUntil,
    close,
    async query(promql) {
      const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: promql })}`);
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data?: { resultType: string; result: unknown };
      };
      if (body.status !== "success" || !body.data)
        throw new Error(`query failed: ${body.error ?? res.status}: ${promql}`);
      const { resultType, result } = body.data;
      if (resultType === "scalar") return [{ metric: {}, value: Number((result as [number, string])[1]) }];
      if (resultType !== "vector") throw new Error(`unexpected result type ${resultType} for ${promql}`);
      return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({
        metric: r.metric,
        value: Number(r.value[1]),
      }));
    },
  };
}
