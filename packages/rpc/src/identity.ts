// Service identity comes from the peer certificate's URI SAN. The names below
// are the contract shared by the code, `make certs` and the Helm chart.
import type { TLSSocket } from "node:tls";
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

export const TRUST_DOMAIN = "paygate.local";
export const GATEWAY_IDENTITY = `spiffe://${TRUST_DOMAIN}/gateway`;
export const bankIdentity = (bank: string): string => `spiffe://${TRUST_DOMAIN}/bank/${bank}`;
export const clientIdentity = (name: string): string => `spiffe://${TRUST_DOMAIN}/client/${name}`;
const BANK_PREFIX = `spiffe://${TRUST_DOMAIN}/bank/`;

/** The bank name behind a bank identity, or undefined for any other identity. */
export function bankOfIdentity(identity: string | undefined): string | undefined {
  return identity?.startsWith(BANK_PREFIX) ? identity.slice(BANK_PREFIX.length) : undefined;
}

export interface PeerInfo {
  /** First spiffe:// URI SAN of the verified client certificate, or undefined. */
  readonly identity: string | undefined;
  readonly ip: string;
}

export const peerKey = createContextKey<PeerInfo>(
  { identity: undefined, ip: "" },
  { description: "verified TLS peer" },
);

type NodeRequest = Parameters<NonNullable<ConnectNodeAdapterOptions["contextValues"]>>[0];

/** Extracts the URI SAN from a certificate's subjectaltname string. */
export function identityFromSubjectAltName(san: string | undefined): string | undefined {
  if (!san) return undefined;
  for (const part of san.split(",")) {
    const p = part.trim();
    if (p.startsWith("URI:spiffe://")) return p.slice(4);
  }
  return undefined;
}

// One TLS handshake, one identity: cache it per HTTP/2 session (or socket for HTTP/1.1).
const identityCache = new WeakMap<object, string | undefined>();

function peerIdentity(req: NodeRequest): string | undefined {
  const socket = req.socket as TLSSocket;
  const owner: object = ("stream" in req && req.stream?.session) || socket;
  if (identityCache.has(owner)) return identityCache.get(owner);
  const cert = typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate(false) : undefined;
  const id = socket.authorized ? identityFromSubjectAltName(cert?.subjectaltname) : undefined;
  identityCache.set(owner, id);
  return id;
}

/** For `connectNodeAdapter({ contextValues })`: puts the verified peer under peerKey. */
export function peerContextValues(req: NodeRequest): ContextValues {
  const values = createContextValues();
  values.set(peerKey, { identity: peerIdentity(req), ip: req.socket.remoteAddress ?? "" });
  return values;
}
