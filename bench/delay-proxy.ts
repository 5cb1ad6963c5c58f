// A TCP proxy that adds latency: every chunk is forwarded after a fixed delay
// (half of it on the way in, half on the way out), so each request/response
// round trip through it costs `delayMs` more. TLS passes through untouched,
// so the gateway still verifies the bank's certificate end to end. Used for
// the "a bank at 5 ms extra latency" scenario; a proxy is more honest than a
// sleep inside the bank because the bank's own timing stays real.
//   node --import tsx bench/delay-proxy.ts --target 127.0.0.1:50052 --delay-ms 5
import net from "node:net";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export interface DelayProxy {
  readonly port: number;
  close(): Promise<void>;
}

/** Schedules writes so that chunks keep their order (same-delay timers fire FIFO). */
function pipeDelayed(from: net.Socket, to: net.Socket, delayMs: number): void {
  from.on("data", (chunk: Buffer) => {
    if (delayMs <= 0) {
      to.write(chunk);
      return;
    }
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, delayMs);
  });
  from.on("end", () => setTimeout(() => to.end(), delayMs));
}

export async function startDelayProxy(options: {
  targetHost: string;
  targetPort: number;
  delayMs: number;
  listenPort?: number;
  host?: string;
}): Promise<DelayProxy> {
  // Node timers have 1 ms resolution: split into whole milliseconds that add up.
  const inboundMs = Math.floor(options.delayMs / 2);
  const outboundMs = options.delayMs - inboundMs;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: options.targetHost, port: options.targetPort });
    upstream.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    }
    pipeDelayed(client, upstream, inboundMs);
    pipeDelayed(upstream, client, outboundMs);
    const kill = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", kill);
    upstream.on("error", kill);
    client.on("close", () => setTimeout(() => upstream.destroy(), outboundMs + inboundMs));
    upstream.on("close", () => setTimeout(() => client.destroy(), outboundMs + inboundMs));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.listenPort ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// Run as its own process so its CPU shows up separately in the report.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      target: { type: "string" },
      "delay-ms": { type: "string", default: "5" },
      port: { type: "string", default: "0" },
    },
  });
  const [host, port] = (values.target ?? "").split(":");
  if (!host || !port) {
    process.stderr.write("usage: delay-proxy.ts --target host:port [--delay-ms 5] [--port 0]\n");
    process.exit(2);
  }
  const proxy = await startDelayProxy({
    targetHost: host,
    targetPort: Number(port),
    delayMs: Number(values["delay-ms"]),
    listenPort: Number(values.port),
  });
  process.stdout.write(
    `${JSON.stringify({ service: "delay-proxy", msg: "listening", port: proxy.port, target: values.target, delayMs: Number(values["delay-ms"]) })}\n`,
  );
  const stop = async () => {
    await proxy.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
}
