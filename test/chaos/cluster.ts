// The chaos stack: N gateway replicas and the banks as real processes (dist/
// bundles, real mTLS), the gateways' store either one SQLite file (one
// replica, the laptop default) or a private PostgreSQL cluster shared by every
// replica (DESIGN.md §3b), optionally Redis, and for card traffic the credit
// bureau and the merchant's checkout. A TCP proxy sits on every link so each
// can be cut, blackholed, delayed or garbled on its own:
//
//   client -> [proxy per replica] -> gateway-i -> [proxy per (replica, bank)] -> bank
//             gateway-i <- [proxy per (bank, replica)] <- bank (GetDecision, any replica)
//             gateway-i -> [proxy per replica] -> postgres
//   checkout -> [balancer: a random running replica per connection] -> gateway-i
//   gateway-i -> credit bureau (direct)
//
// Clients pick a random replica for every call, retries included, as a
// Kubernetes Service without affinity does.
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { AuthService } from "@paygate/proto/gateway";
import { createMtlsTransport } from "@paygate/rpc";
import type { SeedAccount as SeedFileAccount } from "@paygate/seed";
import {
  bureauProcess,
  checkoutProcess,
  freePort,
  GATEWAY_NODE_OPTIONS,
  PostgresServer,
  RedisServer,
  ServiceProcess,
  TEST_PASSWORD_SUFFIX,
  testCerts,
  tlsFilesFor,
} from "@paygate/testkit";
import type { Rng } from "../sim/rng.js";
import { startProxy, type LinkProxy } from "./proxy.js";
import { openStoreReader, type StoreReader } from "./store-reader.js";

export type StoreKind = "sqlite" | "postgres";

/** What an account is for: the transfer workload, a card holder's account, or the merchant's. */
export type AccountUse = "transfer" | "card" | "merchant";

/** An account of the seed file this cluster writes (seedYaml), with what the workloads use it for. */
export interface SeedAccount extends Pick<SeedFileAccount, "id" | "bank" | "owner" | "currency" | "openingMinor"> {
  readonly use: AccountUse;
}

/** Customers of the transfer workload. */
export const CUSTOMERS = ["alice", "bob", "carol", "dave", "erin"] as const;
/** Card holders (their own accounts, funded far beyond what a run can spend, so insufficient_funds is never a right answer). */
export const CARD_HOLDERS = ["frank", "grace"] as const;
export const MERCHANT = { username: "shop", password: `shop${TEST_PASSWORD_SUFFIX}` } as const;

export function chaosAccounts(banks: readonly string[]): SeedAccount[] {
  const hasC = banks.includes("bank-c");
  const all: SeedAccount[] = [
    { id: "bank-a/1001", bank: "bank-a", owner: "alice", currency: "USD", openingMinor: 5_000_000n, use: "transfer" }, // the hot account
    { id: "bank-a/1002", bank: "bank-a", owner: "bob", currency: "USD", openingMinor: 300_000n, use: "transfer" },
    { id: "bank-b/2001", bank: "bank-b", owner: "carol", currency: "USD", openingMinor: 300_000n, use: "transfer" },
    { id: "bank-b/2002", bank: "bank-b", owner: "alice", currency: "USD", openingMinor: 100_000n, use: "transfer" },
    { id: "bank-b/2003", bank: "bank-b", owner: "erin", currency: "USD", openingMinor: 20_000n, use: "transfer" },
    { id: "bank-c/3001", bank: "bank-c", owner: "dave", currency: "USD", openingMinor: 300_000n, use: "transfer" },
    { id: "bank-c/3002", bank: "bank-c", owner: "erin", currency: "USD", openingMinor: 50_000n, use: "transfer" },
    // Cards: issued at bank-a and bank-c, the merchant banks at bank-b, so every capture and refund is a two-bank round.
    { id: "bank-a/1101", bank: "bank-a", owner: "frank", currency: "USD", openingMinor: 50_000_000n, use: "card" },
    hasC
      ? { id: "bank-c/3101", bank: "bank-c", owner: "grace", currency: "USD", openingMinor: 50_000_000n, use: "card" }
      : { id: "bank-a/1102", bank: "bank-a", owner: "grace", currency: "USD", openingMinor: 50_000_000n, use: "card" },
    { id: "bank-b/2101", bank: "bank-b", owner: MERCHANT.username, currency: "USD", openingMinor: 0n, use: "merchant" },
  ];
  return all.filter((a) => banks.includes(a.bank));
}

function seedYaml(banks: readonly string[], accounts: readonly SeedAccount[]): string {
  const customers = [...CUSTOMERS, ...CARD_HOLDERS];
  return [
    `banks: [${banks.join(", ")}]`,
    "users:",
    `  - { id: admin, username: admin, password: admin${TEST_PASSWORD_SUFFIX}, roles: [admin] }`,
    `  - { id: ${MERCHANT.username}, username: ${MERCHANT.username}, password: ${MERCHANT.password}, roles: [merchant] }`,
    ...customers.map(
      (u) => `  - { id: ${u}, username: ${u}, password: ${u}${TEST_PASSWORD_SUFFIX}, roles: [customer] }`,
    ),
    "accounts:",
    ...accounts.map(
      (a) => `  - { id: ${a.id}, owner: ${a.owner}, currency: ${a.currency}, opening_minor: ${a.openingMinor} }`,
    ),
  ].join("\n");
}

/** The card holders' reports: frank and grace pass the risk rule; dave (score 480) is declined by it. */
const BUREAU_DATA = `
as_of: "2026-01-15T09:00:00Z"
reports:
  - { user_id: frank, score: 780, open_credit_minor: 1500000, currency: USD, utilisation_bps: 1200, delinquencies: 0 }
  - { user_id: grace, score: 720, open_credit_minor: 250000, currency: USD, utilisation_bps: 2500, delinquencies: 0 }
  - { user_id: dave, score: 480, open_credit_minor: 300000, currency: USD, utilisation_bps: 9600, delinquencies: 5 }
`;

export interface ClusterOptions {
  readonly banks: readonly string[];
  readonly store: StoreKind;
  /** Gateway replicas; more than one needs the shared store (postgres). */
  readonly gateways: number;
  readonly redis: boolean;
  /** Also the credit bureau and the checkout (card traffic). */
  readonly cards: boolean;
  readonly prepareTimeoutMs: number;
  readonly resolveBackoffMaxMs: number;
  readonly leaseMs: number;
  readonly heartbeatIntervalMs: number;
  /** Draws the replica of every client call (and the balancer's choice per connection). */
  readonly rng: Rng;
}

export class Cluster {
  readonly dir = mkdtempSync(join(tmpdir(), "paygate-chaos-"));
  readonly certs = testCerts();
  readonly accounts: SeedAccount[];
  readonly banks = new Map<string, ServiceProcess>();
  readonly gateways: ServiceProcess[] = [];
  /** Per replica: the proxy clients dial. */
  readonly clientProxies: LinkProxy[] = [];
  /** `${replica}/${bank}` -> proxy that replica dials for participant calls. */
  readonly toBank = new Map<string, LinkProxy>();
  /** `${bank}/${replica}` -> proxy that bank dials for GetDecision. */
  readonly fromBank = new Map<string, LinkProxy>();
  /** Per replica: its link to PostgreSQL (postgres store only). */
  readonly pgProxies: LinkProxy[] = [];
  /** The checkout's link to the gateways: a random running replica per connection. */
  checkoutLink: LinkProxy | undefined;
  pg: PostgresServer | undefined;
  redis: RedisServer | undefined;
  bureau: ServiceProcess | undefined;
  checkout: ServiceProcess | undefined;
  checkoutUrl = "";
  bankUrls = new Map<string, string>();
  gatewayPorts: number[] = [];
  reader!: StoreReader;
  /** What scanLogs() counted: takeovers, orphan sweeps, fatal lines. */
  readonly tallies: Record<string, number> = {};
  /** Every ALARM line a service logged. */
  readonly alarms: string[] = [];
  private readonly scanned = new Map<ServiceProcess, number>();
  private readonly transports = new Map<string, Transport>();

  private constructor(readonly options: ClusterOptions) {
    if (options.store === "sqlite" && options.gateways !== 1)
      throw new Error("the SQLite store serves exactly one gateway replica; use --store postgres for more");
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

  replicaName(i: number): string {
    return `gateway-${i}`;
  }

  /** The SQLite store's file (sqlite only). */
  get gatewayDbFile(): string {
    return join(this.dir, "gateway-0", "gateway.db");
  }

  get checkoutDbFile(): string {
    return join(this.dir, "checkout", "checkout.db");
  }

  get merchantAccount(): SeedAccount {
    return this.accounts.find((a) => a.use === "merchant")!;
  }

  /** Every process the nemesis may kill and the watcher watches (PostgreSQL and Redis apart). */
  get processes(): ServiceProcess[] {
    return [
      ...this.gateways,
      ...this.banks.values(),
      ...(this.bureau ? [this.bureau] : []),
      ...(this.checkout ? [this.checkout] : []),
    ];
  }

  get proxies(): LinkProxy[] {
    return [
      ...this.clientProxies,
      ...this.toBank.values(),
      ...this.fromBank.values(),
      ...this.pgProxies,
      ...(this.checkoutLink ? [this.checkoutLink] : []),
    ];
  }

  private pickReplica(): number {
    return this.options.rng.int(0, this.gateways.length - 1);
  }

  private async launch(): Promise<void> {
    const { banks, gateways: n } = this.options;
    const seedFile = join(this.dir, "seed.yaml");
    writeFileSync(seedFile, seedYaml(banks, this.accounts));
    const pgStarting =
      this.options.store === "postgres" ? PostgresServer.start({ settings: { max_connections: "200" } }) : undefined;
    if (this.options.redis) this.redis = await RedisServer.start({ appendOnly: false });
    if (pgStarting) this.pg = await pgStarting;

    for (let i = 0; i < n; i++) this.gatewayPorts.push(await freePort());
    const gatewayTarget = (i: number) => ({ host: "127.0.0.1", port: this.gatewayPorts[i]! });
    for (let i = 0; i < n; i++)
      this.clientProxies.push(await startProxy(`clients->${this.replicaName(i)}`, gatewayTarget(i)));
    if (this.pg)
      for (let i = 0; i < n; i++)
        this.pgProxies.push(
          await startProxy(`${this.replicaName(i)}->postgres`, { host: "127.0.0.1", port: this.pg.port }),
        );

    const common = {
      SEED_FILE: seedFile,
      TLS_CA_FILE: join(this.certs, "ca.crt"),
      LOG_LEVEL: "info",
      METRICS_PORT: "0",
    };
    const timeout = String(this.options.prepareTimeoutMs);
    for (const b of banks) {
      const port = await freePort();
      this.bankUrls.set(b, `https://127.0.0.1:${port}`);
      const coordinators: string[] = [];
      for (let i = 0; i < n; i++) {
        this.toBank.set(`${i}/${b}`, await startProxy(`${this.replicaName(i)}->${b}`, { host: "127.0.0.1", port }));
        const from = await startProxy(`${b}->${this.replicaName(i)}`, gatewayTarget(i));
        this.fromBank.set(`${b}/${i}`, from);
        coordinators.push(`https://127.0.0.1:${from.port}`);
      }
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
            // Any replica answers GetDecision for any txn (DESIGN.md §3b).
            COORDINATOR_URL: coordinators.join(","),
            PREPARE_TIMEOUT_MS: timeout,
            RESOLVE_INTERVAL_MS: "200",
            RESOLVE_BACKOFF_MAX_MS: String(this.options.resolveBackoffMaxMs),
          },
        }),
      );
    }

    let bureauUrl = "";
    if (this.options.cards) {
      const b = await bureauProcess({ dir: this.dir, certs: this.certs, data: BUREAU_DATA });
      this.bureau = b.process;
      bureauUrl = b.url;
    }

    const cardSecretFile = join(this.dir, "card-secret.key");
    writeFileSync(cardSecretFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    const gtls = tlsFilesFor(this.certs, "gateway");
    for (let i = 0; i < n; i++) {
      const store: Record<string, string> = this.pg
        ? {
            DATABASE_URL: `postgres://postgres@127.0.0.1:${this.pgProxies[i]!.port}/${this.pg.database}`,
            GATEWAY_LEASE_MS: String(this.options.leaseMs),
            GATEWAY_HEARTBEAT_INTERVAL_MS: String(this.options.heartbeatIntervalMs),
            DATABASE_STATEMENT_TIMEOUT_MS: "3000",
            // Every replica hashes card numbers with the same key.
            CARD_SECRET_FILE: cardSecretFile,
          }
        : {};
      this.gateways.push(
        new ServiceProcess({
          name: this.replicaName(i),
          bundle: "gateway",
          startTimeoutMs: 60_000,
          env: {
            ...common,
            NODE_OPTIONS: GATEWAY_NODE_OPTIONS,
            GATEWAY_REPLICA: this.replicaName(i),
            GATEWAY_PORT: String(this.gatewayPorts[i]),
            GATEWAY_DATA_DIR: join(this.dir, this.replicaName(i)),
            TLS_CERT_FILE: gtls.certFile,
            TLS_KEY_FILE: gtls.keyFile,
            BANKS: banks.map((b) => `${b}=https://127.0.0.1:${this.toBank.get(`${i}/${b}`)!.port}`).join(","),
            PREPARE_TIMEOUT_MS: timeout,
            COMMIT_TIMEOUT_MS: "1000",
            REDRIVE_INTERVAL_MS: "200",
            REDRIVE_BACKOFF_MAX_MS: "1000",
            LOGIN_FAILURES_MAX: "1000",
            ...(this.redis ? { REDIS_URL: this.redis.url } : {}),
            ...(bureauUrl
              ? {
                  CREDIT_BUREAU_URL: bureauUrl,
                  CREDIT_BUREAU_TIMEOUT_MS: "2000",
                  CARD_DAILY_SPEND_MAX_MINOR: "1000000000000",
                }
              : {}),
            ...store,
          },
        }),
      );
    }

    await Promise.all([...this.banks.values(), ...(this.bureau ? [this.bureau] : [])].map((p) => p.start()));
    // All replicas at once: migrations and the seed must not race (advisory lock, insert-if-absent).
    await Promise.all(this.gateways.map((g) => g.start()));

    if (this.options.cards) {
      const running = () => {
        const up = this.gateways.map((g, i) => (g.running ? i : -1)).filter((i) => i >= 0);
        return up.length > 0 ? this.options.rng.pick(up) : this.pickReplica();
      };
      this.checkoutLink = await startProxy("checkout->gateways", () => gatewayTarget(running()));
      const c = await checkoutProcess({
        dir: this.dir,
        certs: this.certs,
        gatewayUrl: `https://127.0.0.1:${this.checkoutLink.port}`,
        merchant: { username: MERCHANT.username, password: MERCHANT.password, accountId: this.merchantAccount.id },
        settlementIntervalMs: 1500,
        env: { GATEWAY_TIMEOUT_MS: "5000" },
      });
      this.checkout = c.process;
      this.checkoutUrl = c.url;
      await this.checkout.start();
    }
    this.reader = openStoreReader(
      this.pg ? { kind: "postgres", url: this.pg.url } : { kind: "sqlite", file: this.gatewayDbFile },
    );
  }

  private transport(replica: number, cert: string, timeoutMs: number): Transport {
    const key = `${replica}/${cert}/${timeoutMs}`;
    let t = this.transports.get(key);
    if (!t) {
      t = createMtlsTransport({
        baseUrl: `https://127.0.0.1:${this.clientProxies[replica]!.port}`,
        tls: tlsFilesFor(this.certs, cert),
        timeoutMs,
        reload: false,
      });
      this.transports.set(key, t);
    }
    return t;
  }

  /**
   * A client of the gateway as `cert`, with a session token if given. Every
   * call (every retry too) goes to a random replica unless `replica` pins one.
   */
  client<S extends DescService>(
    service: S,
    token: string | undefined,
    timeoutMs: number,
    options: { cert?: string; replica?: number } = {},
  ): Client<S> {
    const cert = options.cert ?? "paycli";
    const pick = () => this.transport(options.replica ?? this.pickReplica(), cert, timeoutMs);
    const headers = (h: ConstructorParameters<typeof Headers>[0]): Headers => {
      const out = new Headers(h);
      if (token) out.set("authorization", `Bearer ${token}`);
      return out;
    };
    const transport: Transport = {
      unary: (method, signal, t, header, input, ctx) => pick().unary(method, signal, t, headers(header), input, ctx),
      stream: (method, signal, t, header, input, ctx) => pick().stream(method, signal, t, headers(header), input, ctx),
    };
    return createClient(service, transport);
  }

  /** A client straight to a bank (not through the proxies) with the gateway's certificate: the checker's view. */
  bankClient<S extends DescService>(service: S, bank: string, timeoutMs: number): Client<S> {
    const key = `bank/${bank}/${timeoutMs}`;
    let t = this.transports.get(key);
    if (!t) {
      t = createMtlsTransport({
        baseUrl: this.bankUrls.get(bank)!,
        tls: tlsFilesFor(this.certs, "gateway"),
        timeoutMs,
        reload: false,
      });
      this.transports.set(key, t);
    }
    return createClient(service, t);
  }

  /** Logs in through random replicas until one answers (bounded): a session from one replica works on all. */
  async login(user: string, password = `${user}${TEST_PASSWORD_SUFFIX}`): Promise<string> {
    let last: unknown;
    for (let i = 0; i < 20; i++) {
      try {
        return (await this.client(AuthService, undefined, 10_000).login({ username: user, password })).sessionToken;
      } catch (e) {
        last = e;
        await new Promise((r) => setTimeout(r, 250 * (i + 1)));
      }
    }
    throw last;
  }

  /**
   * Counts what the services logged since the last scan: takeovers of a
   * replica whose lease ran out, its own orphans aborted, and every ALARM
   * line (kept whole, for the report).
   */
  scanLogs(): void {
    mkdirSync(join(this.dir, "logs"), { recursive: true });
    for (const p of this.processes) {
      const from = this.scanned.get(p) ?? 0;
      // Every line also goes to <dir>/logs/<name>.jsonl (kept with PAYGATE_KEEP_TEST_DATA=1), as memory keeps only a tail.
      if (p.lines.length > from)
        appendFileSync(
          join(this.dir, "logs", `${p.name}.jsonl`),
          p.lines
            .slice(from)
            .map((l) => JSON.stringify(l))
            .join("\n") + "\n",
        );
      for (let i = from; i < p.lines.length; i++) {
        const l = p.lines[i]!;
        const msg = typeof l.msg === "string" ? l.msg : "";
        if (msg.startsWith("took over")) this.tallies.takeovers = (this.tallies.takeovers ?? 0) + 1;
        if (msg.startsWith("aborted this replica's undecided"))
          this.tallies.orphanSweeps = (this.tallies.orphanSweeps ?? 0) + 1;
        if (l.level === "fatal") this.tallies.fatal = (this.tallies.fatal ?? 0) + 1;
        if (l.alarm === true || msg.startsWith("ALARM"))
          this.alarms.push(`[${p.name}] ${JSON.stringify(l).slice(0, 800)}`);
      }
      this.scanned.set(p, p.lines.length);
    }
  }

  /** Memory: ServiceProcess keeps every log line; a long run keeps only the tail (scanned first). */
  trimLogs(keep = 2000): void {
    this.scanLogs();
    for (const p of this.processes) {
      if (p.lines.length > keep * 2) {
        p.lines.splice(0, p.lines.length - keep);
        this.scanned.set(p, p.lines.length);
      }
      if (p.rawStderr.length > 200) p.rawStderr.splice(0, p.rawStderr.length - 100);
    }
  }

  async close(): Promise<void> {
    this.scanLogs();
    await this.reader?.close();
    for (const p of this.proxies) await p.close();
    // The checkout first: it would otherwise log the gateways going away.
    if (this.checkout) {
      this.checkout.thaw();
      await this.checkout.stop();
    }
    this.pg?.resume();
    await Promise.all(
      [...this.gateways, ...this.banks.values(), ...(this.bureau ? [this.bureau] : [])].map(async (p) => {
        p.thaw();
        await p.stop();
      }),
    );
    this.transports.clear();
    await this.redis?.close();
    await this.pg?.close();
    if (!process.env.PAYGATE_KEEP_TEST_DATA) rmSync(this.dir, { recursive: true, force: true });
  }
}
