// Shared by the k6 scripts: configuration from the environment, the mTLS gRPC
// client, login, and one transfer. k6 speaks the gRPC protocol to the gateway
// (connect-node serves gRPC, gRPC-Web and Connect on one port), over TLS with
// a client certificate, exactly as any external client would.
//
// Environment (defaults fit `make up` run from the repository root):
//   GATEWAY_ADDR   host:port of the gateway (localhost:50050)
//   CA, CERT, KEY  PEM files; relative paths are resolved from THIS directory
//                  (k6's open()), so pass absolute paths ($PWD/...)
//   PROTO_DIR      the repository's proto/ directory (../../proto)
//   PAYERS         who pays: "user:password:acct[|acct...],user2:..."
//   TO_ACCOUNTS    payees, comma separated
//   VUS, DURATION  load shape (8, 10s); AMOUNT_MINOR per transfer (1)
//   P99_MS         threshold on the 99th percentile of grpc_req_duration
//   CHECKS_RATE    threshold on the share of passing checks (0.99)
import grpc from "k6/net/grpc";
import { check, fail } from "k6";

export const env = (name, fallback) => (__ENV[name] !== undefined && __ENV[name] !== "" ? __ENV[name] : fallback);

export const ADDR = env("GATEWAY_ADDR", "localhost:50050");
const PROTO_DIR = env("PROTO_DIR", "../../proto");
const TLS = {
  cacerts: [open(env("CA", "../../.certs/ca.crt"))],
  cert: open(env("CERT", "../../.certs/paycli.crt")),
  key: open(env("KEY", "../../.certs/paycli.key")),
};
export const AMOUNT_MINOR = env("AMOUNT_MINOR", "1");
export const CURRENCY = env("CURRENCY", "USD");

/** One client per VU (module scope is per VU in k6); protos are parsed once in the init context. */
export const client = new grpc.Client();
client.load([PROTO_DIR], "paygate/gateway/v1/gateway.proto");

let connected = false;
export function connect() {
  if (!connected) {
    client.connect(ADDR, { tls: TLS, timeout: "10s" });
    connected = true;
  }
}

export function options(extra = {}) {
  return {
    scenarios: {
      load: { executor: "constant-vus", vus: Number(env("VUS", "8")), duration: env("DURATION", "10s") },
    },
    thresholds: {
      checks: [`rate>=${env("CHECKS_RATE", "0.99")}`],
      grpc_req_duration: [`p(99)<${env("P99_MS", "1000")}`],
    },
    setupTimeout: "60s",
    teardownTimeout: "60s",
    ...extra,
  };
}

/** "alice:pw:bank-a/1001|bank-a/1003,bob:pw:bank-b/2001" */
export function parsePayers(spec) {
  return spec.split(",").filter(Boolean).map((p) => {
    const [user, password, accounts] = p.split(":");
    if (!user || !password || !accounts) fail(`PAYERS entry ${JSON.stringify(p)} must be user:password:acct[|acct]`);
    return { user, password, accounts: accounts.split("|") };
  });
}

export const list = (spec) => spec.split(",").map((s) => s.trim()).filter(Boolean);

export function login(username, password) {
  connect();
  const res = client.invoke("paygate.gateway.v1.AuthService/Login", { username, password });
  if (res.status !== grpc.StatusOK) fail(`login ${username} failed: ${JSON.stringify(res.error)}`);
  return res.message.sessionToken;
}

/** Logs every payer in; what setup() returns to the VUs. */
export function loginPayers(payers) {
  return payers.map((p) => ({ ...p, token: login(p.user, p.password) }));
}

export const pick = (xs) => xs[Math.floor(Math.random() * xs.length)];

export function uniqueKey(prefix) {
  return `${prefix}-${__VU}-${__ITER}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
}

export function transfer(token, from, to, key) {
  return client.invoke(
    "paygate.gateway.v1.PaymentService/Transfer",
    { idempotencyKey: key, fromAccountId: from, toAccountId: to, amountMinor: AMOUNT_MINOR, currency: CURRENCY, memo: "k6" },
    { metadata: { authorization: `Bearer ${token}` }, timeout: "30s" },
  );
}

export const committed = (r) => r.status === grpc.StatusOK && r.message && r.message.transaction && r.message.transaction.status === "TRANSACTION_STATUS_COMMITTED";

/** The default iteration of most scripts: a random payer pays a random payee. */
export function payOnce(payers, payees, prefix) {
  connect();
  const p = pick(payers);
  const from = pick(p.accounts);
  const candidates = payees.filter((t) => t !== from);
  const res = transfer(p.token, from, pick(candidates), uniqueKey(prefix));
  check(res, { "transfer committed": committed });
  return res;
}

export function balanceOf(token, accountId) {
  connect();
  const res = client.invoke("paygate.gateway.v1.PaymentService/GetBalance", { accountId }, { metadata: { authorization: `Bearer ${token}` } });
  if (res.status !== grpc.StatusOK) fail(`GetBalance ${accountId}: ${JSON.stringify(res.error)}`);
  return BigInt(res.message.accounts[0].balanceMinor);
}
