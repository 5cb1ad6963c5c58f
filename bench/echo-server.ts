// The "one RPC" ceiling: the gateway's own Transfer method, served with the
// same mTLS HTTP/2 server code (startRpcServer) but doing nothing: it echoes
// the request back as a committed transaction. The benchmark drives it with
// the same load generator, client and message shapes as the real gateway, so
// transfers/s ÷ echo/s says how close a transfer gets to a bare round trip.
//   node --import tsx bench/echo-server.ts --port 0 --certs .certs
// Logs one JSON line {"msg":"listening","port":N}; SIGTERM stops it.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { createLogger, startRpcServer } from "@paygate/rpc";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    certs: { type: "string", default: ".certs" },
    // The certificate it presents; the gateway's, as a client would see.
    name: { type: "string", default: "gateway" },
  },
});
const certs = values.certs!;
const logger = createLogger("echo", "warn");
let sequence = 0n;

const server = await startRpcServer({
  host: values.host!,
  port: Number(values.port),
  tls: {
    caFile: join(certs, "ca.crt"),
    certFile: join(certs, `${values.name}.crt`),
    keyFile: join(certs, `${values.name}.key`),
  },
  interceptors: [],
  logger,
  routes: (router) =>
    router.service(PaymentService, {
      transfer(req) {
        const now = timestampFromMs(Date.now());
        return {
          transaction: {
            transactionId: `echo:${req.idempotencyKey}`,
            sequence: ++sequence,
            status: TransactionStatus.COMMITTED,
            fromAccountId: req.fromAccountId,
            toAccountId: req.toAccountId,
            amountMinor: req.amountMinor,
            currency: req.currency,
            memo: req.memo,
            idempotencyKey: req.idempotencyKey,
            createdAt: now,
            decidedAt: now,
            initiatedByUserId: "echo",
          },
        };
      },
    }),
});
process.stdout.write(`${JSON.stringify({ service: "echo", msg: "listening", port: server.port })}\n`);
const stop = async () => {
  await server.close(1000);
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
