// The real routes and interceptors behind startRpcServer on port 0, called
// over mTLS as the gateway calls them; then the process contract of main.ts.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { CreditBureauService } from "@paygate/proto/bureau";
import {
  createAccessInterceptor,
  createLogger,
  createLoggingInterceptor,
  createMtlsTransport,
  startRpcServer,
  type RpcServer,
} from "@paygate/rpc";
import { refused, rejectsWith, repoRoot, rogueCerts, testCerts, tlsFilesFor } from "@paygate/testkit";
import { createBureau } from "./domain/report.js";
import { bureauAccessTable } from "./access.js";
import { bureauRoutes } from "./routes.js";
import { parseReportText } from "./store/report-file.js";

const DATA = `
as_of: "2026-01-15T09:00:00Z"
reports:
  - { user_id: alice, score: 780, open_credit_minor: 1500000, currency: USD, utilisation_bps: 1200, delinquencies: 0 }
  - { user_id: dave, score: 480, open_credit_minor: 300000, currency: USD, utilisation_bps: 9600, delinquencies: 5 }
`;

function bureauClient(port: number, certs: string, name: string): Client<typeof CreditBureauService> {
  return createClient(
    CreditBureauService,
    createMtlsTransport({
      baseUrl: `https://127.0.0.1:${port}`,
      tls: tlsFilesFor(certs, name),
      timeoutMs: 10_000,
      reload: false,
    }),
  );
}

describe("credit bureau over mTLS", () => {
  let server: RpcServer;
  const logged: Array<Record<string, unknown>> = [];
  before(async () => {
    const certs = testCerts();
    // Capture the logging interceptor's lines to check what they carry.
    const log = createLogger("credit-bureau-test", "info");
    const sink = log.child({});
    sink.info = ((obj: Record<string, unknown>, msg?: string) => void logged.push({ ...obj, msg })) as typeof sink.info;
    server = await startRpcServer({
      host: "127.0.0.1",
      port: 0,
      tls: tlsFilesFor(certs, "credit-bureau"),
      routes: bureauRoutes(createBureau(parseReportText(DATA))),
      interceptors: [createLoggingInterceptor(sink), createAccessInterceptor(bureauAccessTable)],
      logger: createLogger("credit-bureau-test", "silent"),
    });
  });
  after(async () => server.close(100));

  test("the gateway gets a report with every field", async () => {
    const gw = bureauClient(server.port, testCerts(), "gateway");
    const { report } = await gw.fetchCreditReport({ userId: "alice" });
    assert.ok(report);
    assert.deepEqual(
      {
        userId: report.userId,
        score: report.score,
        open: report.openCreditMinor,
        currency: report.currency,
        bps: report.utilisationBps,
        late: report.delinquencies,
      },
      { userId: "alice", score: 780, open: 1_500_000n, currency: "USD", bps: 1200, late: 0 },
    );
    assert.equal(timestampMs(report.reportTime!), Date.parse("2026-01-15T09:00:00Z"));
    const line = logged.find((l) => l.msg === "rpc" && l.userId === "alice");
    assert.ok(line, JSON.stringify(logged));
    assert.equal(line.peer, "spiffe://paygate.local/gateway");
    assert.equal(line.code, "ok");
  });

  test("unknown user: NotFound user_not_found; malformed id: InvalidArgument", async () => {
    const gw = bureauClient(server.port, testCerts(), "gateway");
    const info = await rejectsWith(gw.fetchCreditReport({ userId: "mallory" }), Code.NotFound, "user_not_found");
    assert.equal(info.metadata.user_id, "mallory");
    await rejectsWith(gw.fetchCreditReport({ userId: "" }), Code.InvalidArgument, "invalid_argument");
  });

  test("only the gateway's identity: other paygate certificates are denied, foreign ones refused", async () => {
    for (const name of ["checkout", "bank-a", "paycli"]) {
      await rejectsWith(
        bureauClient(server.port, testCerts(), name).fetchCreditReport({ userId: "alice" }),
        Code.PermissionDenied,
        "peer_not_allowed",
      );
    }
    await refused(bureauClient(server.port, rogueCerts(), "gateway").fetchCreditReport({ userId: "alice" }));
  });

  test("concurrent: 200 calls in flight at once all get their own answer", async () => {
    const gw = bureauClient(server.port, testCerts(), "gateway");
    const users = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? "dave" : i % 3 === 1 ? "alice" : "zed"));
    const results = await Promise.allSettled(users.map((userId) => gw.fetchCreditReport({ userId })));
    for (const [i, r] of results.entries()) {
      if (users[i] === "zed") assert.equal(r.status, "rejected");
      else assert.equal(r.status === "fulfilled" ? r.value.report?.userId : undefined, users[i]);
    }
  });
});

describe("credit-bureau process", () => {
  const dir = mkdtempSync(join(tmpdir(), "bureau-proc-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function run(env: Record<string, string>) {
    const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "services/credit-bureau/src/main.ts")], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    return { child, exited, out: () => stdout, err: () => stderr };
  }

  test("logs listening with the port, serves, and exits 0 on SIGTERM", async () => {
    const certs = testCerts();
    const dataFile = join(dir, "reports.yaml");
    writeFileSync(dataFile, DATA);
    const tls = tlsFilesFor(certs, "credit-bureau");
    const p = await run({
      CREDIT_BUREAU_PORT: "0",
      METRICS_PORT: "0",
      CREDIT_BUREAU_DATA_FILE: dataFile,
      TLS_CA_FILE: tls.caFile,
      TLS_CERT_FILE: tls.certFile,
      TLS_KEY_FILE: tls.keyFile,
    });
    let port = 0;
    let metricsPort = 0;
    // Bounded by the test runner's own timeout; the loop ends when the line arrives or the child dies.
    for (let i = 0; i < 600 && port === 0 && p.child.exitCode === null; i++) {
      const line = p
        .out()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === "listening");
      if (line) {
        port = line.port as number;
        metricsPort = line.metricsPort as number;
      } else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(port > 0, `no listening line: ${p.out()} ${p.err()}`);
    const { report } = await bureauClient(port, certs, "gateway").fetchCreditReport({ userId: "dave" });
    assert.equal(report?.score, 480);
    const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(
      scraped,
      /paygate_rpc_server_requests_total\{[^}]*method="paygate\.bureau\.v1\.CreditBureauService\/FetchCreditReport"[^}]*\} 1/,
    );
    p.child.kill("SIGTERM");
    const [code] = await p.exited;
    assert.equal(code, 0, p.err());
  });

  test("a bad data file or setting exits 2 with every problem on stderr", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "as_of: never\nreports:\n  - { user_id: x, score: 1 }\n");
    const p = await run({ CREDIT_BUREAU_DATA_FILE: bad, METRICS_PORT: "0" });
    const [code] = await p.exited;
    assert.equal(code, 2);
    assert.match(p.err(), /as_of/);
    assert.match(p.err(), /reports\[0\]\.score/);
    const q = await run({ CREDIT_BUREAU_PORT: "http", LOG_LEVEL: "loud", METRICS_PORT: "0" });
    const [code2] = await q.exited;
    assert.equal(code2, 2);
    assert.match(q.err(), /CREDIT_BUREAU_PORT/);
    assert.match(q.err(), /LOG_LEVEL/);
  });
});
