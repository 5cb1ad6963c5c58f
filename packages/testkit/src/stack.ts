// A whole paygate on this machine: N banks and a gateway as real processes,
// real mTLS, real SQLite files in a temp dir. Tests drive it through the
// generated Connect clients exactly as paycli and checkout do. With
// `gateways: N` and a shared PostgreSQL (DESIGN.md §3b) it runs N gateway
// replicas, and clients can send each call to a random live replica, as a
// Kubernetes Service without session affinity does.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { AdminService, AuthService, type ReconcileResponse } from "@paygate/proto/gateway";
import { createMtlsTransport } from "@paygate/rpc";
import { freePort, ServiceProcess } from "./processes.js";
import { testCerts, tlsFilesFor } from "./certs.js";
import { bureauProcess, checkoutProcess } from "./checkout.js";
import type { PostgresServer } from "./postgres.js";

export const TEST_PASSWORD_SUFFIX = "-test-password";

/** An account in testSeed that belongs to no user yet: its holder links it with the code (DESIGN.md §11). */
export interface LinkableAccount {
  readonly accountId: string;
  readonly holder: string;
  readonly linkCode: string;
  readonly currency: string;
  readonly openingMinor: bigint;
}

/** testSeed's unlinked accounts, at its first two banks (a: bank-a, b: bank-b by default). */
export function testLinkable(a = "bank-a", b = "bank-b"): readonly LinkableAccount[] {
  return [
    {
      accountId: `${a}/1004`,
      holder: "Dana Newcomer",
      linkCode: "DANA-TEST-LINK-A",
      currency: "USD",
      openingMinor: 20_000n,
    },
    {
      accountId: `${b}/2004`,
      holder: "Dana Newcomer",
      linkCode: "DANA-TEST-LINK-B",
      currency: "USD",
      openingMinor: 5_000n,
    },
    {
      accountId: `${a}/1005`,
      holder: "Erin Newcomer",
      linkCode: "ERIN-TEST-LINK-A",
      currency: "USD",
      openingMinor: 10_000n,
    },
  ];
}

/** Demo-ish seed for tests: generous balances, two customers at each bank, and unlinked accounts (testLinkable). */
export function testSeed(banks: readonly string[] = ["bank-a", "bank-b"]): string {
  const [a = "bank-a", b = "bank-b"] = banks;
  const users = ["admin", "alice", "bob", "carol", "shop"];
  const roles: Record<string, string> = { admin: "admin", shop: "merchant" };
  return [
    `banks: [${banks.join(", ")}]`,
    "users:",
    ...users.map(
      (u) =>
        `  - { id: ${u}, username: ${u}, password: ${u}${TEST_PASSWORD_SUFFIX}, roles: [${roles[u] ?? "customer"}] }`,
    ),
    "accounts:",
    `  - { id: ${a}/1001, owner: alice, currency: USD, opening_minor: 100000 }`,
    `  - { id: ${a}/1002, owner: bob, currency: USD, opening_minor: 50000 }`,
    `  - { id: ${a}/1003, owner: alice, currency: EUR, opening_minor: 50000 }`,
    `  - { id: ${b}/2001, owner: bob, currency: USD, opening_minor: 50000 }`,
    `  - { id: ${b}/2002, owner: carol, currency: USD, opening_minor: 0 }`,
    `  - { id: ${b}/2003, owner: shop, currency: USD, opening_minor: 0 }`,
    ...banks.slice(2).map((x, i) => `  - { id: ${x}/${3001 + i}, owner: carol, currency: USD, opening_minor: 20000 }`),
    ...testLinkable(a, b).map(
      (l) =>
        `  - { id: ${l.accountId}, holder: ${l.holder}, link_code: ${l.linkCode}, currency: ${l.currency}, opening_minor: ${l.openingMinor} }`,
    ),
  ].join("\n");
}

const GATEWAY_TIMEOUT_MS = 30_000;
/** Replicas one stack may run (ports, processes and PG connections are finite). */
const GATEWAYS_MAX = 8;
const BANK_TIMEOUT_MS = 10_000;

/** `transport` with `authorization: Bearer <token>` on every call, as the gateway's sessions expect. */
function withBearer(transport: Transport, token: string): Transport {
  const withToken = (header: Parameters<Transport["unary"]>[3]): Headers => {
    const h = new Headers(header);
    h.set("authorization", `Bearer ${token}`);
    return h;
  };
  return {
    unary: (method, signal, timeoutMs, header, input, contextValues) =>
      transport.unary(method, signal, timeoutMs, withToken(header), input, contextValues),
    stream: (method, signal, timeoutMs, header, input, contextValues) =>
      transport.stream(method, signal, timeoutMs, withToken(header), input, contextValues),
  };
}

export interface StackOptions {
  readonly banks?: readonly string[];
  readonly seed?: string;
  /** Small in tests so timeouts and in-doubt resolution happen quickly. */
  readonly prepareTimeoutMs?: number;
  readonly gatewayEnv?: Record<string, string>;
  /** The gateway's REDIS_URL (e.g. RedisServer.url); unset = its embedded store only. */
  readonly redisUrl?: string;
  readonly bankEnv?: Record<string, string>;
  /** Also run the credit bureau (started before the gateway, which gets its CREDIT_BUREAU_URL); `data` replaces TEST_BUREAU_DATA. */
  readonly bureau?: boolean | { readonly data?: string };
  /** Also run the merchant's checkout (after the gateway), logged in as the seed's "shop" settling into `merchantAccountId` (default bank-b/2003). */
  readonly checkout?: boolean | { readonly merchantAccountId?: string; readonly env?: Record<string, string> };
  /**
   * Gateway replicas gateway-0..N-1 (default 1), each with its own port, ops
   * port and data dir, all on one shared store: more than one needs `postgres`
   * (or DATABASE_URL in gatewayEnv). Banks get every replica's URL.
   */
  readonly gateways?: number;
  /** Every replica's DATABASE_URL: a PostgresServer (its url) or a postgres:// URL. The test owns it (the stack does not stop it). */
  readonly postgres?: PostgresServer | string;
}

/**
 * The environment a paycli process needs to reach `stack`'s gateway replica 0 as
 * alice (her test password, paycli's client certificate), keeping its files in `home`.
 */
export function paycliEnv(stack: Stack, home: string): Record<string, string> {
  const tls = tlsFilesFor(stack.certs, "paycli");
  return {
    PATH: process.env.PATH ?? "",
    HOME: home,
    PAYCLI_HOME: home,
    PAYGATE_URL: stack.gatewayUrl,
    PAYGATE_CA: tls.caFile,
    PAYGATE_CERT: tls.certFile,
    PAYGATE_KEY: tls.keyFile,
    PAYCLI_PASSWORD: `alice${TEST_PASSWORD_SUFFIX}`,
  };
}

/** Which gateway replica a call goes to: replica i, or a random live one per call. */
export type GatewayTarget = number | "any";

/** The gateway's V8 flags, as the chart sets them (gateway.nodeOptions; test/chart checks they agree). */
export const GATEWAY_NODE_OPTIONS = "--max-semi-space-size=4 --max-old-space-size=192";

/** Checks the replica count; returns every replica's DATABASE_URL, which more than one replica needs. */
function sharedDatabaseUrl(options: StackOptions, gatewayCount: number): string | undefined {
  if (!Number.isInteger(gatewayCount) || gatewayCount < 1 || gatewayCount > GATEWAYS_MAX)
    throw new Error(`gateways must be an integer from 1 to ${GATEWAYS_MAX}, got ${gatewayCount}`);
  const databaseUrl =
    typeof options.postgres === "string"
      ? options.postgres
      : (options.postgres?.url ?? options.gatewayEnv?.DATABASE_URL);
  // Each replica would otherwise keep its own SQLite file and know only what it was told itself.
  if (gatewayCount > 1 && databaseUrl === undefined)
    throw new Error(
      `gateways: ${gatewayCount} needs a shared store: pass postgres (a PostgresServer or a postgres:// URL)`,
    );
  return databaseUrl;
}

export class Stack {
  readonly banks = new Map<string, ServiceProcess>();
  /** Replica 0 (gateways[0]). */
  gateway!: ServiceProcess;
  /** Replica 0's URL (gatewayUrls[0]); what the checkout dials. */
  gatewayUrl = "";
  /** Replica i is GATEWAY_REPLICA=gateway-i. */
  readonly gateways: ServiceProcess[] = [];
  readonly gatewayUrls: string[] = [];
  readonly bankUrls = new Map<string, string>();
  bureau: ServiceProcess | undefined;
  bureauUrl = "";
  checkout: ServiceProcess | undefined;
  checkoutUrl = "";
  /** One transport per (target, identity), kept for the stack's life; see mtls(). */
  private readonly transports = new Map<string, Transport>();

  private constructor(
    readonly dir: string,
    readonly certs: string,
  ) {}

  static async start(options: StackOptions = {}): Promise<Stack> {
    const banks = options.banks ?? ["bank-a", "bank-b"];
    const gatewayCount = options.gateways ?? 1;
    const databaseUrl = sharedDatabaseUrl(options, gatewayCount);
    const stack = new Stack(mkdtempSync(join(tmpdir(), "paygate-e2e-")), testCerts());
    const seedFile = join(stack.dir, "seed.yaml");
    writeFileSync(seedFile, options.seed ?? testSeed(banks));
    const gatewayPorts = await stack.allocatePorts(banks, gatewayCount);
    const common = {
      SEED_FILE: seedFile,
      TLS_CA_FILE: join(stack.certs, "ca.crt"),
      LOG_LEVEL: "info",
      METRICS_PORT: "0",
      PREPARE_TIMEOUT_MS: String(options.prepareTimeoutMs ?? 1500),
    };
    stack.addBanks(banks, common, options);
    if (options.bureau) {
      const b = await bureauProcess({
        dir: stack.dir,
        certs: stack.certs,
        data: typeof options.bureau === "object" ? options.bureau.data : undefined,
      });
      stack.bureau = b.process;
      stack.bureauUrl = b.url;
    }
    stack.addGateways(banks, gatewayPorts, common, databaseUrl, options);
    if (options.checkout) await stack.addCheckout(typeof options.checkout === "object" ? options.checkout : {});
    try {
      await Promise.all([...stack.banks.values(), ...(stack.bureau ? [stack.bureau] : [])].map((p) => p.start()));
      // At once: they migrate and seed under advisory locks, which is what this also exercises.
      await Promise.all(stack.gateways.map((g) => g.start()));
      await stack.checkout?.start();
    } catch (e) {
      await stack.close();
      throw e;
    }
    return stack;
  }

  /** Picks every gateway replica's and bank's port and records their URLs; returns the gateway ports. */
  private async allocatePorts(banks: readonly string[], gatewayCount: number): Promise<number[]> {
    const gatewayPorts: number[] = [];
    for (let i = 0; i < gatewayCount; i++) {
      gatewayPorts.push(await freePort());
      this.gatewayUrls.push(`https://127.0.0.1:${gatewayPorts[i]}`);
    }
    this.gatewayUrl = this.gatewayUrls[0]!;
    for (const b of banks) this.bankUrls.set(b, `https://127.0.0.1:${await freePort()}`);
    return gatewayPorts;
  }

  /** One (not yet started) bank process per name, each told every gateway replica's URL. */
  private addBanks(banks: readonly string[], common: Record<string, string>, options: StackOptions): void {
    for (const b of banks) {
      const tls = tlsFilesFor(this.certs, b);
      this.banks.set(
        b,
        new ServiceProcess({
          name: b,
          bundle: "bank",
          env: {
            ...common,
            BANK_NAME: b,
            BANK_PORT: new URL(this.bankUrls.get(b)!).port,
            BANK_DATA_DIR: join(this.dir, b),
            TLS_CERT_FILE: tls.certFile,
            TLS_KEY_FILE: tls.keyFile,
            COORDINATOR_URL: this.gatewayUrls.join(","),
            RESOLVE_INTERVAL_MS: "200",
            ...options.bankEnv,
          },
        }),
      );
    }
  }

  /** The (not yet started) gateway replicas, on the shared store when there is one. */
  private addGateways(
    banks: readonly string[],
    gatewayPorts: readonly number[],
    common: Record<string, string>,
    databaseUrl: string | undefined,
    options: StackOptions,
  ): void {
    const gatewayCount = gatewayPorts.length;
    const gtls = tlsFilesFor(this.certs, "gateway");
    // A shared store needs one card-hashing key for every replica (or none finds another's cards).
    const cardSecretFile = join(this.dir, "card-secret.key");
    if (databaseUrl !== undefined)
      writeFileSync(cardSecretFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    for (let i = 0; i < gatewayCount; i++) {
      this.gateways.push(
        new ServiceProcess({
          // One replica keeps the names (and data dir) single-gateway tests know.
          name: gatewayCount === 1 ? "gateway" : `gateway-${i}`,
          bundle: "gateway",
          env: {
            ...common,
            NODE_OPTIONS: GATEWAY_NODE_OPTIONS,
            GATEWAY_REPLICA: `gateway-${i}`,
            GATEWAY_PORT: String(gatewayPorts[i]),
            GATEWAY_DATA_DIR: join(this.dir, i === 0 ? "gateway" : `gateway-${i}`),
            TLS_CERT_FILE: gtls.certFile,
            TLS_KEY_FILE: gtls.keyFile,
            BANKS: banks.map((b) => `${b}=${this.bankUrls.get(b)}`).join(","),
            COMMIT_TIMEOUT_MS: "1000",
            REDRIVE_INTERVAL_MS: "200",
            REDRIVE_BACKOFF_MAX_MS: "1000",
            ...(databaseUrl !== undefined ? { DATABASE_URL: databaseUrl, CARD_SECRET_FILE: cardSecretFile } : {}),
            ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
            ...(this.bureauUrl ? { CREDIT_BUREAU_URL: this.bureauUrl } : {}),
            ...options.gatewayEnv,
          },
        }),
      );
    }
    this.gateway = this.gateways[0]!;
  }

  /** The (not yet started) merchant checkout, logged in as the seed's "shop". */
  private async addCheckout(c: {
    readonly merchantAccountId?: string;
    readonly env?: Record<string, string>;
  }): Promise<void> {
    const started = await checkoutProcess({
      dir: this.dir,
      certs: this.certs,
      gatewayUrl: this.gatewayUrl,
      merchant: {
        username: "shop",
        password: `shop${TEST_PASSWORD_SUFFIX}`,
        accountId: c.merchantAccountId ?? "bank-b/2003",
      },
      env: c.env,
    });
    this.checkout = started.process;
    this.checkoutUrl = started.url;
  }

  bank(name: string): ServiceProcess {
    const p = this.banks.get(name);
    if (!p) throw new Error(`no bank ${name}`);
    return p;
  }

  /** A transport to the gateway (replica 0) presenting the given client certificate. */
  transport(certName = "paycli", certsDir = this.certs, interceptors: Interceptor[] = []): Transport {
    // Interceptors are part of a transport, so a transport with its own is the caller's alone.
    if (interceptors.length > 0)
      return createMtlsTransport({
        baseUrl: this.gatewayUrl,
        tls: tlsFilesFor(certsDir, certName),
        timeoutMs: GATEWAY_TIMEOUT_MS,
        interceptors,
        reload: false,
      });
    return this.mtls(this.gatewayUrl, certsDir, certName, GATEWAY_TIMEOUT_MS);
  }

  /** A gateway (replica 0) client that sends `authorization: Bearer <token>` when a token is given. */
  client<S extends DescService>(service: S, token?: string, certName = "paycli"): Client<S> {
    const transport = this.transport(certName);
    // The token rides on each call's headers, so every session shares the identity's one transport.
    return createClient(service, token ? withBearer(transport, token) : transport);
  }

  /**
   * A transport to replica `target`, or with "any" one that sends every call
   * (each retry is a new call, a stream stays where it began) to a random
   * live replica, as a Service without session affinity does: a running
   * process (a frozen one still counts, as a hung pod stays an endpoint until
   * its probes fail). With none running it picks among all, and the call
   * fails as one to a Service without endpoints would.
   */
  gatewayTransport(target: GatewayTarget = "any", certName = "paycli", certsDir = this.certs): Transport {
    if (target !== "any") return this.mtls(this.replicaUrl(target), certsDir, certName, GATEWAY_TIMEOUT_MS);
    const pick = (): Transport => {
      const live = this.gateways.flatMap((g, i) => (g.running ? [i] : []));
      const from = live.length > 0 ? live : this.gateways.map((_, i) => i);
      const i = from[Math.floor(Math.random() * from.length)]!;
      return this.mtls(this.gatewayUrls[i]!, certsDir, certName, GATEWAY_TIMEOUT_MS);
    };
    return {
      unary: (...args) => pick().unary(...args),
      stream: (...args) => pick().stream(...args),
    };
  }

  /** A client of replica `target` (or, with "any", of a random live replica per call), with the session token when given. */
  gatewayClient<S extends DescService>(
    target: GatewayTarget,
    service: S,
    token?: string,
    certName = "paycli",
  ): Client<S> {
    const transport = this.gatewayTransport(target, certName);
    return createClient(service, token ? withBearer(transport, token) : transport);
  }

  /** Replica i's ServiceProcess. */
  replica(i: number): ServiceProcess {
    this.replicaUrl(i);
    return this.gateways[i]!;
  }

  private replicaUrl(i: number): string {
    const url = this.gatewayUrls[i];
    if (!Number.isInteger(i) || url === undefined)
      throw new Error(`no gateway replica ${i} (this stack runs ${this.gateways.length})`);
    return url;
  }

  /** A client straight to a bank, presenting `certName` (only "gateway" may call banks). */
  bankClient<S extends DescService>(service: S, bank: string, certName = "gateway", certsDir = this.certs): Client<S> {
    const url = this.bankUrls.get(bank);
    if (!url) throw new Error(`no bank ${bank}`);
    return createClient(service, this.mtls(url, certsDir, certName, BANK_TIMEOUT_MS));
  }

  /**
   * The cached transport for one (target, identity). Tests call client() and
   * reconcile() in loops; a transport per call piled up HTTP/2 sessions and, with
   * certificate reloading on, three polling file watchers each, all on the shared
   * test certificates (MaxListenersExceededWarning after ten). The test CA is made
   * once per run and never rotated under a stack, so these transports do not
   * watch the files (as test/chaos and test/security do), leaving nothing behind
   * that outlives the stack.
   */
  private mtls(baseUrl: string, certsDir: string, certName: string, timeoutMs: number): Transport {
    const key = JSON.stringify([baseUrl, certsDir, certName]);
    let t = this.transports.get(key);
    if (!t) {
      t = createMtlsTransport({ baseUrl, tls: tlsFilesFor(certsDir, certName), timeoutMs, reload: false });
      this.transports.set(key, t);
    }
    return t;
  }

  /** Logs in on a random live replica (with one gateway, on it): a session works on every replica. */
  async login(username: string, password = `${username}${TEST_PASSWORD_SUFFIX}`): Promise<string> {
    const res = await this.gatewayClient("any", AuthService).login({ username, password });
    return res.sessionToken;
  }

  /** Reconcile on a random live replica (so it still answers with one of several replicas killed). */
  async reconcile(): Promise<ReconcileResponse> {
    const token = await this.login("admin");
    return this.gatewayClient("any", AdminService, token).reconcile({});
  }

  /**
   * Waits (bounded) for in-doubt transactions to resolve, then returns the
   * reconciliation; throws with the full report if money is not conserved.
   */
  async assertConserved(attemptsMax = 100): Promise<ReconcileResponse> {
    let last: ReconcileResponse | undefined;
    for (let i = 0; i < attemptsMax; i++) {
      last = await this.reconcile();
      if (last.conserved && last.inDoubt.length === 0) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(
      `money not conserved or txns still in doubt:\n${JSON.stringify(last, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2)}`,
    );
  }

  async close(): Promise<void> {
    // Their HTTP/2 sessions end with the processes below; a stack is not reused after close.
    this.transports.clear();
    // The checkout first: it would otherwise log the gateway going away.
    await this.checkout?.stop();
    await Promise.all(
      [...this.gateways, ...this.banks.values(), this.bureau]
        .filter((p): p is ServiceProcess => p !== undefined)
        .map(async (p) => {
          p.thaw();
          await p.stop();
        }),
    );
    if (!process.env.PAYGATE_KEEP_TEST_DATA) rmSync(this.dir, { recursive: true, force: true });
  }
}
