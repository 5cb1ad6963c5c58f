// A whole paygate on this machine: N banks and a gateway as real processes,
// real mTLS, real SQLite files in a temp dir. Tests drive it through the
// generated Connect clients exactly as paycli and checkout do.
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

export const TEST_PASSWORD_SUFFIX = "-test-password";

/** Demo-ish seed for tests: generous balances, two customers at each bank. */
export function testSeed(banks: readonly string[] = ["bank-a", "bank-b"]): string {
  const [a = "bank-a", b = "bank-b"] = banks;
  const users = ["admin", "alice", "bob", "carol", "shop"];
  const roles: Record<string, string> = { admin: "admin", shop: "merchant" };
  return [
    `banks: [${banks.join(", ")}]`,
    "users:",
    ...users.map((u) => `  - { id: ${u}, username: ${u}, password: ${u}${TEST_PASSWORD_SUFFIX}, roles: [${roles[u] ?? "customer"}] }`),
    "accounts:",
    `  - { id: ${a}/1001, owner: alice, currency: USD, opening_minor: 100000 }`,
    `  - { id: ${a}/1002, owner: bob, currency: USD, opening_minor: 50000 }`,
    `  - { id: ${a}/1003, owner: alice, currency: EUR, opening_minor: 50000 }`,
    `  - { id: ${b}/2001, owner: bob, currency: USD, opening_minor: 50000 }`,
    `  - { id: ${b}/2002, owner: carol, currency: USD, opening_minor: 0 }`,
    `  - { id: ${b}/2003, owner: shop, currency: USD, opening_minor: 0 }`,
    ...banks.slice(2).map((x, i) => `  - { id: ${x}/${3001 + i}, owner: carol, currency: USD, opening_minor: 20000 }`),
  ].join("\n");
}

const GATEWAY_TIMEOUT_MS = 30_000;
const BANK_TIMEOUT_MS = 10_000;

/** `transport` with `authorization: Bearer <token>` on every call, as the gateway's sessions expect. */
function withBearer(transport: Transport, token: string): Transport {
  const withToken = (header: Parameters<Transport["unary"]>[3]): Headers => {
    const h = new Headers(header);
    h.set("authorization", `Bearer ${token}`);
    return h;
  };
  return {
    unary: (method, signal, timeoutMs, header, input, contextValues) => transport.unary(method, signal, timeoutMs, withToken(header), input, contextValues),
    stream: (method, signal, timeoutMs, header, input, contextValues) => transport.stream(method, signal, timeoutMs, withToken(header), input, contextValues),
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
}

/** The gateway's V8 flags, as the chart sets them (gateway.nodeOptions; test/chart checks they agree). */
export const GATEWAY_NODE_OPTIONS = "--max-semi-space-size=4";

export class Stack {
  readonly banks = new Map<string, ServiceProcess>();
  gateway!: ServiceProcess;
  gatewayUrl = "";
  readonly bankUrls = new Map<string, string>();
  bureau: ServiceProcess | undefined;
  bureauUrl = "";
  checkout: ServiceProcess | undefined;
  checkoutUrl = "";
  /** One transport per (target, identity), kept for the stack's life; see mtls(). */
  private readonly transports = new Map<string, Transport>();

  private constructor(readonly dir: string, readonly certs: string) {}

  static async start(options: StackOptions = {}): Promise<Stack> {
    const banks = options.banks ?? ["bank-a", "bank-b"];
    const stack = new Stack(mkdtempSync(join(tmpdir(), "paygate-e2e-")), testCerts());
    const seedFile = join(stack.dir, "seed.yaml");
    writeFileSync(seedFile, options.seed ?? testSeed(banks));
    const prepareTimeoutMs = String(options.prepareTimeoutMs ?? 1500);
    const gatewayPort = await freePort();
    stack.gatewayUrl = `https://127.0.0.1:${gatewayPort}`;
    for (const b of banks) stack.bankUrls.set(b, `https://127.0.0.1:${await freePort()}`);
    const common = { SEED_FILE: seedFile, TLS_CA_FILE: join(stack.certs, "ca.crt"), LOG_LEVEL: "info", METRICS_PORT: "0" };
    for (const b of banks) {
      const tls = tlsFilesFor(stack.certs, b);
      stack.banks.set(
        b,
        new ServiceProcess({
          name: b,
          bundle: "bank",
          env: {
            ...common,
            BANK_NAME: b,
            BANK_PORT: new URL(stack.bankUrls.get(b)!).port,
            BANK_DATA_DIR: join(stack.dir, b),
            TLS_CERT_FILE: tls.certFile,
            TLS_KEY_FILE: tls.keyFile,
            COORDINATOR_URLS: `gateway-0=${stack.gatewayUrl}`,
            PREPARE_TIMEOUT_MS: prepareTimeoutMs,
            RESOLVE_INTERVAL_MS: "200",
            ...options.bankEnv,
          },
        }),
      );
    }
    if (options.bureau) {
      const b = await bureauProcess({ dir: stack.dir, certs: stack.certs, data: typeof options.bureau === "object" ? options.bureau.data : undefined });
      stack.bureau = b.process;
      stack.bureauUrl = b.url;
    }
    const gtls = tlsFilesFor(stack.certs, "gateway");
    stack.gateway = new ServiceProcess({
      name: "gateway",
      bundle: "gateway",
      env: {
        ...common,
        NODE_OPTIONS: GATEWAY_NODE_OPTIONS,
        GATEWAY_REPLICA: "gateway-0",
        GATEWAY_PORT: String(gatewayPort),
        GATEWAY_DATA_DIR: join(stack.dir, "gateway"),
        TLS_CERT_FILE: gtls.certFile,
        TLS_KEY_FILE: gtls.keyFile,
        BANKS: banks.map((b) => `${b}=${stack.bankUrls.get(b)}`).join(","),
        PREPARE_TIMEOUT_MS: prepareTimeoutMs,
        COMMIT_TIMEOUT_MS: "1000",
        REDRIVE_INTERVAL_MS: "200",
        REDRIVE_BACKOFF_MAX_MS: "1000",
        ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
        ...(stack.bureauUrl ? { CREDIT_BUREAU_URL: stack.bureauUrl } : {}),
        ...options.gatewayEnv,
      },
    });
    if (options.checkout) {
      const c = typeof options.checkout === "object" ? options.checkout : {};
      const started = await checkoutProcess({
        dir: stack.dir,
        certs: stack.certs,
        gatewayUrl: stack.gatewayUrl,
        merchant: { username: "shop", password: `shop${TEST_PASSWORD_SUFFIX}`, accountId: c.merchantAccountId ?? "bank-b/2003" },
        env: c.env,
      });
      stack.checkout = started.process;
      stack.checkoutUrl = started.url;
    }
    try {
      await Promise.all([...stack.banks.values(), ...(stack.bureau ? [stack.bureau] : [])].map((p) => p.start()));
      await stack.gateway.start();
      await stack.checkout?.start();
    } catch (e) {
      await stack.close();
      throw e;
    }
    return stack;
  }

  bank(name: string): ServiceProcess {
    const p = this.banks.get(name);
    if (!p) throw new Error(`no bank ${name}`);
    return p;
  }

  /** A transport to the gateway presenting the given client certificate. */
  transport(certName = "paycli", certsDir = this.certs, interceptors: Interceptor[] = []): Transport {
    // Interceptors are part of a transport, so a transport with its own is the caller's alone.
    if (interceptors.length > 0) return createMtlsTransport({ baseUrl: this.gatewayUrl, tls: tlsFilesFor(certsDir, certName), timeoutMs: GATEWAY_TIMEOUT_MS, interceptors, reload: false });
    return this.mtls(this.gatewayUrl, certsDir, certName, GATEWAY_TIMEOUT_MS);
  }

  /** A gateway client that sends `authorization: Bearer <token>` when a token is given. */
  client<S extends DescService>(service: S, token?: string, certName = "paycli"): Client<S> {
    const transport = this.transport(certName);
    // The token rides on each call's headers, so every session shares the identity's one transport.
    return createClient(service, token ? withBearer(transport, token) : transport);
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

  async login(username: string, password = `${username}${TEST_PASSWORD_SUFFIX}`): Promise<string> {
    const res = await this.client(AuthService).login({ username, password });
    return res.sessionToken;
  }

  async reconcile(): Promise<ReconcileResponse> {
    const token = await this.login("admin");
    return this.client(AdminService, token).reconcile({});
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
    throw new Error(`money not conserved or txns still in doubt:\n${JSON.stringify(last, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2)}`);
  }

  async close(): Promise<void> {
    // Their HTTP/2 sessions end with the processes below; a stack is not reused after close.
    this.transports.clear();
    // The checkout first: it would otherwise log the gateway going away.
    await this.checkout?.stop();
    await Promise.all([this.gateway, ...this.banks.values(), this.bureau].filter((p): p is ServiceProcess => p !== undefined).map(async (p) => {
      p.thaw();
      await p.stop();
    }));
    if (!process.env.PAYGATE_KEEP_TEST_DATA) rmSync(this.dir, { recursive: true, force: true });
  }
}
