// A TCP proxy (node:net) that sits on one link between two services and can
// break it: cut (existing connections reset, new ones refused until healed),
// blackhole (connections accepted, bytes swallowed: a peer that hangs without
// closing), and delay (every chunk held back, both directions, order kept).
// TLS passes through untouched, so the services still authenticate each other.
// The target may be a function: each new connection asks it where to go (a
// load balancer in front of several gateway replicas).
import net from "node:net";
import { once } from "node:events";

export type LinkState = "up" | "cut" | "blackhole";

export interface LinkProxy {
  readonly port: number;
  readonly name: string;
  readonly state: LinkState;
  readonly delayMs: number;
  readonly connections: number;
  cut(): void;
  blackhole(): void;
  delay(ms: number): void;
  /** Flips a byte in the next chunk each way (a middlebox bug, an attacker on the path). */
  garble(): void;
  heal(): void;
  close(): Promise<void>;
}

/** Chunks buffered per direction while delayed; past this the link is cut (a bounded queue). */
const QUEUED_BYTES_MAX = 64 * 1024 * 1024;

export interface ProxyTarget {
  readonly host: string;
  readonly port: number;
}

export async function startProxy(
  name: string,
  target: ProxyTarget | (() => ProxyTarget),
  listenPort = 0,
): Promise<LinkProxy> {
  let state: LinkState = "up";
  let delayMs = 0;
  /** Directions (per pipe) that still owe a garbled chunk. */
  let garbleEpoch = 0;
  const sockets = new Set<net.Socket>();

  function pipe(from: net.Socket, to: net.Socket): void {
    // One FIFO per direction drained by one timer: bytes of a TCP stream must
    // never overtake each other (separate timers can fire out of order, and a
    // TLS record that arrives shuffled is "bad record mac").
    const queue: { dueMs: number; chunk: Buffer }[] = [];
    let queuedBytes = 0;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    let garbledEpoch = garbleEpoch;
    const drain = () => {
      timer = undefined;
      const now = Date.now();
      while (queue.length > 0 && queue[0]!.dueMs <= now) {
        const { chunk } = queue.shift()!;
        queuedBytes -= chunk.length;
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(drain, queue[0]!.dueMs - now);
      else if (ended) to.end();
    };
    from.on("data", (chunk: Buffer) => {
      if (state === "blackhole") return;
      if (garbledEpoch !== garbleEpoch && chunk.length > 8) {
        garbledEpoch = garbleEpoch;
        chunk = Buffer.from(chunk);
        chunk[chunk.length >> 1]! ^= 0x5a;
      }
      if (delayMs === 0 && queue.length === 0) {
        to.write(chunk);
        return;
      }
      queuedBytes += chunk.length;
      if (queuedBytes > QUEUED_BYTES_MAX) {
        from.destroy();
        to.destroy();
        return;
      }
      queue.push({ dueMs: Date.now() + delayMs, chunk });
      timer ??= setTimeout(drain, Math.max(0, queue[0]!.dueMs - Date.now()));
    });
    from.on("end", () => {
      ended = true;
      if (queue.length === 0) to.end();
    });
    from.on("close", () => clearTimeout(timer));
  }

  const server = net.createServer((client) => {
    if (state === "cut") {
      client.resetAndDestroy();
      return;
    }
    const to = typeof target === "function" ? target() : target;
    const upstream = net.connect(to.port, to.host);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    pipe(client, upstream);
    pipe(upstream, client);
  });
  server.listen(listenPort, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    name,
    get state() {
      return state;
    },
    get delayMs() {
      return delayMs;
    },
    get connections() {
      return sockets.size / 2;
    },
    cut() {
      state = "cut";
      for (const s of sockets) s.resetAndDestroy();
      sockets.clear();
    },
    blackhole() {
      state = "blackhole";
    },
    garble() {
      garbleEpoch++;
    },
    delay(ms) {
      delayMs = ms;
    },
    heal() {
      // A blackholed connection has lost bytes mid-stream: it is useless; drop it.
      if (state === "blackhole") for (const s of sockets) s.destroy();
      state = "up";
      delayMs = 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
