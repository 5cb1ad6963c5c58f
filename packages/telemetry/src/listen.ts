// Binding a Node server, for both of a service's ports (the ops port here, the
// RPC port in @paygate/rpc): a bind failure (port taken) rejects instead of
// becoming an unhandled 'error' event.
import type { AddressInfo, Server } from "node:net";

/** Listens on host:port (0 picks a free port) and answers the port bound. */
export async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}
