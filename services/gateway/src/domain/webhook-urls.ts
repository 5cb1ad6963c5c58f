// Which URLs the gateway may POST webhooks to (DESIGN.md §12). A webhook is a
// request the gateway makes on a user's behalf to a place the user chose, so
// the place is checked the way a server-side request forgery would be
// attempted: https only, no credentials or fragment, a host the operator's
// allow-list admits (IP literals only when listed by address), loopback only
// when configured (`make up`, tests), and never the gateway's own listen or
// metrics address. The same check runs at registration and before every
// attempt (the allow-list may have shrunk since); the HTTPS sender checks the
// resolved address too (a name that resolves to loopback later: DNS rebinding).
import { fail, ok, type Result } from "./model.js";

export const WEBHOOK_URL_LENGTH_MAX = 2048;

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface WebhookUrlPolicy {
  /** Lowercased exact names, "*.suffix" patterns and IP literals (WEBHOOK_ALLOWED_HOSTS). */
  readonly allowedHosts: readonly string[];
  /** WEBHOOK_ALLOW_LOOPBACK. */
  readonly allowLoopback: boolean;
  /** The gateway's own RPC and metrics addresses (read when checking: a port 0 is known only once listening). */
  readonly ownAddresses: () => readonly HostPort[];
}

const IPV4_PATTERN = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function ipv4Octets(host: string): number[] | undefined {
  const m = IPV4_PATTERN.exec(host);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  return octets.every((o) => o <= 255) ? octets : undefined;
}

/** The IPv4 address inside an IPv4-mapped IPv6 one (::ffff:a.b.c.d or ::ffff:xxxx:xxxx), if it is one. */
function mappedIpv4(host: string): number[] | undefined {
  const h = host.toLowerCase();
  if (!h.startsWith("::ffff:")) return undefined;
  const rest = h.slice(7);
  const dotted = ipv4Octets(rest);
  if (dotted) return dotted;
  const m = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(rest);
  if (!m) return undefined;
  const hi = parseInt(m[1]!, 16);
  const lo = parseInt(m[2]!, 16);
  return [hi >> 8, hi & 255, lo >> 8, lo & 255];
}

function isIpv6(host: string): boolean {
  return host.includes(":") && /^[0-9a-f:.]+$/i.test(host);
}

/** An IPv4 or IPv6 literal (without brackets). */
export function isIpLiteral(host: string): boolean {
  return ipv4Octets(host) !== undefined || isIpv6(host);
}

/**
 * Whether connecting to this host name or address reaches this machine:
 * localhost and *.localhost, 127.0.0.0/8, ::1, the unspecified addresses
 * (0.0.0.0 and :: connect to the local host) and their IPv4-mapped forms.
 */
export function isLoopbackHost(rawHost: string): boolean {
  const host = stripBrackets(rawHost).toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  const v4 = ipv4Octets(host) ?? mappedIpv4(host);
  if (v4) return v4[0] === 127 || v4.every((o) => o === 0);
  if (!isIpv6(host)) return false;
  const groups = expandIpv6(host);
  if (!groups) return false;
  const allZeroButLast = groups.slice(0, 7).every((g) => g === 0);
  return allZeroButLast && (groups[7] === 1 || groups[7] === 0);
}

/** Link-local addresses (169.254.0.0/16, fe80::/10): cloud metadata services live there; never called. */
export function isLinkLocalAddress(rawHost: string): boolean {
  const host = stripBrackets(rawHost).toLowerCase();
  const v4 = ipv4Octets(host) ?? mappedIpv4(host);
  if (v4) return v4[0] === 169 && v4[1] === 254;
  const groups = isIpv6(host) ? expandIpv6(host) : undefined;
  return groups !== undefined && (groups[0]! & 0xffc0) === 0xfe80;
}

function expandIpv6(host: string): number[] | undefined {
  const halves = host.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string) => (part === "" ? [] : part.split(":"));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  // A trailing dotted quad counts as two groups.
  const last = tail.length > 0 ? tail : head;
  const quad = last.length > 0 ? ipv4Octets(last[last.length - 1]!) : undefined;
  if (quad)
    last.splice(
      last.length - 1,
      1,
      ((quad[0]! << 8) | quad[1]!).toString(16),
      ((quad[2]! << 8) | quad[3]!).toString(16),
    );
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail].map((g) =>
    /^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN,
  );
  return groups.every((g) => !Number.isNaN(g)) ? groups : undefined;
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** Exact names, "*.suffix" (a name strictly under the suffix) and IP literals (only by their exact address). */
export function hostAllowed(host: string, allowedHosts: readonly string[]): boolean {
  const h = stripBrackets(host).toLowerCase();
  if (isIpLiteral(h)) return allowedHosts.includes(h);
  return allowedHosts.some((a) => (a.startsWith("*.") ? h.endsWith(a.slice(1)) && h.length > a.length - 1 : a === h));
}

function isUnspecified(host: string): boolean {
  const h = stripBrackets(host);
  return h === "0.0.0.0" || h === "::";
}

/** Whether host:port is one of the gateway's own addresses (a loopback or wildcard bind answers on every loopback name). */
function isOwnAddress(host: string, port: number, own: readonly HostPort[]): boolean {
  const h = stripBrackets(host).toLowerCase();
  return own.some((o) => {
    if (o.port !== port) return false;
    const ownHost = stripBrackets(o.host).toLowerCase();
    if (ownHost === h) return true;
    return (isLoopbackHost(ownHost) || isUnspecified(ownHost)) && isLoopbackHost(h);
  });
}

/** The URL as it will be called (normalized by the WHATWG parser), or why it may not be. */
export function checkWebhookUrl(raw: string, policy: WebhookUrlPolicy): Result<string> {
  const field = { field: "url" };
  if (raw.length === 0) return fail("invalid_webhook_url", "url is required", field);
  if (raw.length > WEBHOOK_URL_LENGTH_MAX)
    return fail("invalid_webhook_url", `url must be at most ${WEBHOOK_URL_LENGTH_MAX} characters`, field);
  if (/[\s\x00-\x1f\x7f]/.test(raw))
    return fail("invalid_webhook_url", "url must not contain spaces or control characters", field);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return fail("invalid_webhook_url", "url is not a valid absolute URL", field);
  }
  if (url.protocol !== "https:") return fail("invalid_webhook_url", "url must be https://", field);
  if (url.username !== "" || url.password !== "")
    return fail("invalid_webhook_url", "url must not carry a user name or password", field);
  if (url.hash !== "" || raw.includes("#")) return fail("invalid_webhook_url", "url must not have a #fragment", field);
  if (url.href.length > WEBHOOK_URL_LENGTH_MAX)
    return fail("invalid_webhook_url", `url must be at most ${WEBHOOK_URL_LENGTH_MAX} characters`, field);
  const host = stripBrackets(url.hostname);
  const port = url.port === "" ? 443 : Number(url.port);
  const shown = JSON.stringify(host);
  if (isLinkLocalAddress(host)) return fail("webhook_host_not_allowed", `host ${shown} is a link-local address`, field);
  if (isLoopbackHost(host) && !policy.allowLoopback)
    return fail(
      "webhook_host_not_allowed",
      `host ${shown} is a loopback address; this gateway does not call those`,
      field,
    );
  if (!hostAllowed(host, policy.allowedHosts))
    return fail(
      "webhook_host_not_allowed",
      `host ${shown} is not in this gateway's allow-list of webhook hosts`,
      field,
    );
  if (isOwnAddress(host, port, policy.ownAddresses()))
    return fail("webhook_host_not_allowed", "url points at the gateway itself", field);
  return ok(url.href);
}
