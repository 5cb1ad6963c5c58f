// The chaos stack: a gateway and N banks as real processes (dist/ bundles,
// real mTLS, SQLite files in a temp dir), optionally Redis, with a TCP proxy
// on every link so links can be cut, blackholed and delayed:
//   client -> [proxy] -> gateway -> [proxy per bank] -> bank
//                        gateway <- [proxy per bank] <- bank (GetDecision)
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { AuthService } from "@paygate/proto/gateway";
import { createMtlsTransport } from "@paygate/rpc";
import { freePort, RedisServer, ServiceProcess, TEST_PASSWORD_SUFFIX, testCerts, tlsFilesFor } from "@paygate/testkit";
import { startProxy, type Proxy } from "./proxy.js";

export interface SeedAccount {
  readonly id: string;
  readonly bank: string;
  readonly owner: string;
  readonly currency: string;
  readonly openingMinor: bigint;
}

export const CUSTOMERS = ["alice", "bob", "carol", "dave", "erin"] as const;

export function chaosAccounts(banks: readonly string[]): SeedAccount[] {
  const all: SeedAccount[] = [
    { id: "bank-a/1001", bank: "bank-a", owner: "alice", currency: "USD", openingMinor: 5_000_000n }, // the hot account
    { id: "bank-a/1002", bank: "bank-a", owner: "bob", currency: "USD", openingMinor: 300_000n },
    { id: "bank-b/2001", bank: "bank-b", owner: "carol", currency: "USD", openingMinor: 300_000n },
    { id: "bank-b/2002", bank: "bank-b", owner: "alice", currency: "USD", openingMinor: 100_000n },
    { id: "bank-b/2003", bank: "bank-b", owner: "erin", currency: "USD", openingMinor: 20_000n },
    { id: "bank-c/3001", bank: "bank-c", owner: "dave", currency: "USD", openingMinor: 300_000n },
    { id: "bank-c/3002", bank: "bank-c", owner: "erin", currency: "USD", openingMinor: 50_000n },
  ];
  return all.filter((a) => banks.includes(a.bank));
}

function seedYaml(banks: readonly string[], accounts: readonly SeedAccount[]): string {
  return [
    `banks: [${banks.join(", ")}]`,
    "users:",
    `  - { id: admin, username: admin, password: admin${TEST_PASSWORD_SUFFIX}, roles: [admin] }`,
    ...CUSTOMERS.map((u) => `  - { id: ${u}, username: ${u}, password: ${u}${TEST_PASSWORD_SUFFIX}, roles: [customer] }`),
    "accounts:",
    ...accounts.map((a) => `  - { id: ${a.id}, owner: ${a.owner}, currency: ${a.currency}, opening_minor: ${a.openingMinor} }`),
  ].join("\n");
}

export interface ClusterOptions {
  readonly banks: readonly string[];
  readonly redis: boolean;
  readonly prepareTimeoutMs: number;
  readonly resolveBackoffMaxMs: number;
}

export class Cluster {
  readonly dir = mkdtempSync(join(tmpdir(), "paygate-chaos-"));
  readonly certs = testCerts();
  readonly accounts: SeedAccount[];
  readonly banks = new Map<string, ServiceProcess>();
  /** bank -> proxy the gateway dials (participant calls). */
  readonly toBank = new Map<string, Proxy>();
  /** bank -> proxy the bank dials (GetDecision). */
  readonly fromBank = new Map<string, Proxy>();
  gateway!: ServiceProcess;
  clientProxy!: Proxy;
  redis: RedisServer | undefined;
  bankUrls = new Map<string, string>();
  gatewayPort = 0;

  private constructor(readonly options: ClusterOptions) {
    this.accounts = chaosAccounts(options.banks);
  }

  static async start(options: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(options);
    try {
      await c.launch();
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  get gatewayDbFile(): string {
    return join(this.dir, "gateway", "gateway.db");
  }

  get clientUrl(): string {
    return `https://127.0.0.1:${this.clientProxy.port}`;
  }

  get processes(): ServiceProcess[] {
    return [this.gateway, ...this.banks.values()];
  }

  private async launch(): Promise<void> {
    const { banks } = this.options;
    const seedFile = join(this.dir, "seed.yaml");
    writeFileSync(seedFile, seedYaml(banks, this.accounts));
    if (this.options.redis) this.redis = await RedisServer.start({ appendOnly: false });
    this.gatewayPort = await freePort();
    const gatewayTarget = { host: "127.0.0.1", port: this.gatewayPort };
    this.clientProxy = await startProxy("client->gateway", gatewayTarget);
    const common = { SEED_FILE: seedFile, TLS_CA_FILE: join(this.certs, "ca.crt"), LOG_LEVEL: "info", METRICS_PORT: "0" };
    const timeout = String(this.options.prepareTimeoutMs);
    for (const b of banks) {
      const port = await freePort();
      this.bankUrls.set(b, `https://127.0.0.1:${port}`);
      this.toBank.set(b, await startProxy(`gateway->${b}`, { host: "127.0.0.1", port }));
      this.fromBank.set(b, await startProxy(`${b}->gateway`, gatewayTarget));
      const tls = tlsFilesFor(this.certs, b);
      this.banks.set(
        b,
        new ServiceProcess({
          name: b,
          bundle: "bank",
          startTimeoutMs: 60_000,
          env: {
            ...common,
            BANK_NAME: b,
            BANK_PORT: String(port),
            BANK_DATA_DIR: join(this.dir, b),
            TLS_CERT_FILE: tls.certFile,
            TLS_KEY_FILE: tls.keyFile,
            COORDINATOR_URLS: `gateway-0=https://127.0.0.1:${this.fromBank.get(b)!.port}`,
            PREPARE_TIMEOUT_MS: timeout,
            RESOLVE_INTERVAL_MS: "200",
            RESOLVE_BACKOFF_MAX_MS: String(this.options.resolveBackoffMaxMs),
          },
        }),
      );
    }
    const gtls = tlsFilesFor(this.certs, "gateway");
    this.gateway = new ServiceProcess({
      name: "gateway",
      bundle: "gateway",
      startTimeoutMs: 60_000,
      env: {
        ...common,
        GATEWAY_REPLICA: "gateway-0",
        GATEWAY_PORT: String(this.gatewayPort),
        GATEWAY_DATA_DIR: join(this.dir, "gateway"),
        TLS_CERT_FILE: gtls.certFile,
        TLS_KEY_FILE: gtls.keyFile,
        BANKS: banks.map((b) => `${b}=https://127.0.0.1:${this.toBank.get(b)!.port}`).join(","),
        PREPARE_TIMEOUT_MS: timeout,
        COMMIT_TIMEOUT_MS: "1000",
        REDRIVE_INTERVAL_MS: "200",
        REDRIVE_BACKOFF_MAX_MS: "1000",
        LOGIN_FAILURES_MAX: "1000",
        ...(this.redis ? { REDIS_URL: this.redis.url } : {}),
      },
    });
    await Promise.all([...this.banks.values()].map((p) => p.start()));
    await this.gateway.start();
  }

  /** A client of the gateway through the client proxy, as `cert`, with a session token if given. */
  client<S extends DescService>(service: S, token: string | undefined, timeoutMs: number, cert = "paycli"): Client<S> {
    const auth: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    return createClient(service, createMtlsTransport({ baseUrl: this.clientUrl, tls: tlsFilesFor(this.certs, cert), timeoutMs, interceptors: [auth], reload: false }));
  }

  /** A client straight to a bank (not through the proxies) with the gateway's certificate: the checker's view. */
  bankClient<S extends DescService>(service: S, bank: string, timeoutMs: number): Client<S> {
    return createClient(service, createMtlsTransport({ baseUrl: this.bankUrls.get(bank)!, tls: tlsFilesFor(this.certs, "gateway"), timeoutMs, reload: false }));
  }

  async login(user: string): Promise<string> {
    const r = await this.client(AuthService, undefined, 30_000).login({ username: user, password: `${user}${TEST_PASSWORD_SUFFIX}` });
    return r.sessionToken;
  }

  /** Memory: ServiceProcess keeps every log line; a long run keeps only the tail. */
  trimLogs(keep = 2000): void {
    for (const p of this.processes) {
      if (p.lines.length > keep * 2) p.lines.splice(0, p.lines.length - keep);
      if (p.rawStderr.length > 200) p.rawStderr.splice(0, p.rawStderr.length - 100);
    }
  }

  async close(): Promise<void> {
    for (const p of [this.clientProxy, ...this.toBank.values(), ...this.fromBank.values()]) await p?.close();
    await Promise.all(
      [this.gateway, ...this.banks.values()].filter(Boolean).map(async (p) => {
        p.thaw();
        await p.stop();
      }),
    );
    await this.redis?.close();
    if (!process.env.PAYGATE_KEEP_TEST_DATA) rmSync(this.dir, { recursive: true, force: true });
  }
}
