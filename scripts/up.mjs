// `make up`: the whole paygate on this machine with embedded defaults — two
// banks and the gateway as separate processes over mTLS, SQLite files under
// ./data, certificates from .certs/. A small supervisor: a process that dies
// is restarted (recovery takes over, as Kubernetes would do it), Ctrl-C stops all.
import { existsSync, mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { localServices } from "./lib/local-services.mjs";
import { createSupervisor } from "./lib/supervisor.mjs";

const root = resolve(new URL("..", import.meta.url).pathname);
const data = resolve(root, "data");
mkdirSync(data, { recursive: true });

// Banks ask GetDecision of the one gateway.
const { banks, edge, gatewayEnv } = localServices({ root, data, coordinatorUrls: ["https://127.0.0.1:50050"] });
const services = [
  ...banks,
  {
    name: "gateway",
    bundle: "gateway",
    env: { ...gatewayEnv, GATEWAY_PORT: "50050", GATEWAY_DATA_DIR: `${data}/gateway`, METRICS_PORT: "9464" },
  },
  ...edge,
].filter((s) => existsSync(`${root}/dist/${s.bundle}.js`));

mkdirSync(resolve(data, "logs"), { recursive: true });
const supervisor = createSupervisor({ root, services, onAllListening: () => tour() });

function tour() {
  const paycli = "node dist/paycli.js";
  console.log(`
\x1b[1mpaygate is up.\x1b[0m  Data: ./data   Certificates: ./.certs (CA: .certs/ca.crt)
  gateway  https://127.0.0.1:50050   (gRPC, gRPC-Web and Connect JSON; mTLS: present a client certificate)
  bank-a   https://127.0.0.1:50051   bank-b  https://127.0.0.1:50052   (only the gateway's certificate may call them)
  bureau   https://127.0.0.1:8081    (credit reports; only the gateway)   checkout  http://127.0.0.1:8080/payment.html

Demo logins (config/seed.yaml):  alice / alice-demo-2026 (bank-a/1001 USD, bank-a/1002 EUR)
  bob / bob-demo-2026 (bank-b/2001)   shop / shop-demo-2026 (merchant, bank-b/2002)   admin / admin-demo-2026
  Dana signs up herself and links bank-a/1003 (code K7QF-9XMB-3TRW), bank-b/2003 (P4HN-2WDC-8YJE): README.md

Try it (in another terminal, from this folder):
  ${
    existsSync(`${root}/dist/paycli.js`)
      ? `${paycli} login alice --password alice-demo-2026
  ${paycli} balance
  ${paycli} pay bank-b/2001 12.50 --from bank-a/1001 --memo "lunch"
  ${paycli} history
  ${paycli} login admin --password admin-demo-2026 && ${paycli} admin reconcile
`
      : ""
  }  curl -s --cacert .certs/ca.crt --cert .certs/admin.crt --key .certs/admin.key \\
    -H 'content-type: application/json' -d '{"username":"alice","password":"alice-demo-2026"}' \\
    https://127.0.0.1:50050/paygate.gateway.v1.AuthService/Login

Card payments (DESIGN.md §6) — the shop's checkout: \x1b[1mhttp://127.0.0.1:8080/payment.html\x1b[0m  (merchant: /merchant)
  1. Issue Alice a card (admin; the number and CVC are shown once):
  C="--cacert .certs/ca.crt --cert .certs/admin.crt --key .certs/admin.key -H content-type:application/json"
  ATOKEN=$(curl -s $C -d '{"username":"admin","password":"admin-demo-2026"}' \\
    https://127.0.0.1:50050/paygate.gateway.v1.AuthService/Login | sed 's/.*"sessionToken":"\\([^"]*\\)".*/\\1/')
  curl -s $C -H "authorization: Bearer $ATOKEN" -d '{"accountId":"bank-a/1001","cardholderName":"Alice Customer"}' \\
    https://127.0.0.1:50050/paygate.gateway.v1.AdminService/IssueCard
  2. Pay on the page with that number, expiry (expMonth/expYear) and CVC; a wrong CVC shows a decline.
  3. "Settle now" on http://127.0.0.1:8080/merchant (sign in as shop / shop-demo-2026; or wait a minute): the money lands in the shop's
     bank-b/2002 (${existsSync(`${root}/dist/paycli.js`) ? `${paycli} login shop --password shop-demo-2026 && ${paycli} balance` : "GetBalance as shop"}).
  4. Webhooks (docs/WEBHOOKS.md): the checkout registered https://127.0.0.1:8443/webhooks/paygate at start-up; a void,
     refund or expiry shows on /merchant ("At the gateway") without polling. Its log lines: msg "webhook".

Metrics (Prometheus text; also /healthz and /readyz on the same ports):
  curl -s http://127.0.0.1:9464/metrics | grep ^paygate_    (gateway; bank-a :9465, bank-b :9466, bureau :9467, checkout :9468)
Traces: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 make up   (any OTLP/HTTP collector; docs/OPERATIONS.md)

Ctrl-C stops everything.  QUIET=1 make up hides the per-call lines.
`);
}

process.on("SIGINT", () => supervisor.shutdown(0));
process.on("SIGTERM", () => supervisor.shutdown(0));

if (services.length === 0) {
  console.error("nothing to start: run `make build` first");
  process.exit(1);
}
// Banks first, so the gateway's recovery can reach them.
for (const s of services.filter((s) => s.bundle === "bank")) supervisor.start(s);
setTimeout(() => services.filter((s) => s.bundle !== "bank").forEach((s) => supervisor.start(s)), 300);
