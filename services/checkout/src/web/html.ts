// The page frame every checkout page shares: one inline stylesheet (no
// external assets: the shop works offline), a nonce for the Content Security
// Policy, and the one escaping function every interpolated value goes through.
import { formatMoney } from "@paygate/money";

export function esc(value: unknown): string {
  return String(value).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );
}

/** "$23.99"-style for USD, "23.99 EUR" otherwise: what a shopper expects to read. */
export function money(amountMinor: bigint, currency: string): string {
  const text = formatMoney(amountMinor, currency);
  return currency === "USD" ? `$${text.replace(/ USD$/, "")}` : text;
}

export function dateTime(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, " UTC");
}

export const SHOP_NAME = "Corner Shop";

const CSS = `
:root {
  --bg: #f4f5f7; --card: #fff; --text: #1d2330; --muted: #5b6475; --line: #d5d9e0;
  --accent: #3949ab; --accent-dark: #283593; --ok: #1b7f3b; --ok-bg: #e7f5ec;
  --bad: #b3261e; --bad-bg: #fdecea; --focus: #ffbf47; --radius: 10px;
  color-scheme: light;
}
* { box-sizing: border-box; }
html { font-size: 100%; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", Arial, sans-serif; }
a { color: var(--accent-dark); }
a:focus-visible, button:focus-visible, input:focus-visible, summary:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.vh { position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
.skip { position: absolute; left: -9999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--card); padding: .5rem 1rem; z-index: 2; }
header.top { background: var(--card); border-bottom: 1px solid var(--line); }
header.top .inner { max-width: 64rem; margin: 0 auto; padding: .9rem 1.25rem; display: flex; align-items: center; gap: .6rem; }
.logo { width: 1.9rem; height: 1.9rem; border-radius: 8px; background: var(--accent); color: #fff; display: grid; place-items: center; font-weight: 700; }
.brand { font-weight: 650; font-size: 1.1rem; }
.secure { margin-left: auto; color: var(--muted); font-size: .875rem; }
main { max-width: 64rem; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
body.backoffice main, body.backoffice header.top .inner { max-width: 100rem; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 0 0 1.25rem; }
h2 { font-size: 1.15rem; margin: 0 0 1rem; }
.layout { display: grid; gap: 1.5rem; grid-template-columns: minmax(0, 1fr); }
@media (min-width: 52rem) { .layout { grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); align-items: start; } .layout .summary { order: 2; position: sticky; top: 1rem; } }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius); padding: 1.5rem; box-shadow: 0 1px 2px rgba(16,24,40,.05); }
.field { margin-bottom: 1.1rem; }
.row { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
label { display: block; font-weight: 600; margin-bottom: .3rem; }
.hint { display: block; color: var(--muted); font-size: .875rem; margin: -.15rem 0 .35rem; }
input[type=text] { width: 100%; font: inherit; font-size: 1.05rem; padding: .7rem .8rem; border: 1px solid #8a93a5; border-radius: 8px; background: #fff; color: var(--text); }
input[type=text]:focus { border-color: var(--accent); }
input.mono { font-variant-numeric: tabular-nums; letter-spacing: .04em; }
input[aria-invalid=true] { border: 2px solid var(--bad); background: #fffafa; }
.error { color: var(--bad); font-size: .9rem; font-weight: 600; margin: .35rem 0 0; }
.error:empty { display: none; }
.alert { border-radius: 8px; padding: .85rem 1rem; margin-bottom: 1.25rem; }
.alert:empty { display: none; }
.alert.bad { background: var(--bad-bg); border: 1px solid #f1b8b3; color: #6b1510; }
.alert.ok-note { background: var(--ok-bg); border: 1px solid #b7e1c3; color: #145c2b; }
.alert ul { margin: .4rem 0 0; padding-left: 1.2rem; }
.alert a { color: #6b1510; font-weight: 600; }
button, .button { display: inline-flex; justify-content: center; align-items: center; gap: .5rem; width: 100%; font: inherit; font-weight: 650; font-size: 1.05rem;
  padding: .85rem 1rem; border-radius: 8px; border: 0; background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; }
button:hover, .button:hover { background: var(--accent-dark); }
button[disabled] { background: #7986cb; cursor: progress; }
.button.secondary { background: #fff; color: var(--accent-dark); border: 1px solid var(--accent); }
.fine { color: var(--muted); font-size: .85rem; margin: .9rem 0 0; text-align: center; }
table { width: 100%; border-collapse: collapse; }
.summary td, .summary th { padding: .45rem 0; text-align: left; vertical-align: top; }
.summary td.num, .summary th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.summary tfoot th, .summary tfoot td { border-top: 1px solid var(--line); padding-top: .75rem; font-size: 1.1rem; }
.summary .qty { color: var(--muted); font-size: .9rem; }
.result { max-width: 34rem; margin: 0 auto; text-align: center; }
.badge { width: 3.5rem; height: 3.5rem; border-radius: 50%; display: grid; place-items: center; margin: 0 auto 1rem; font-size: 1.8rem; font-weight: 700; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.bad { background: var(--bad-bg); color: var(--bad); }
dl.facts { display: grid; grid-template-columns: auto 1fr; gap: .5rem 1rem; text-align: left; margin: 1.25rem 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.code { font-family: ui-monospace, "Liberation Mono", Menlo, monospace; font-size: 1.25rem; letter-spacing: .12em; }
.actions { display: grid; gap: .75rem; margin-top: 1.25rem; }
.wide { max-width: none; }
.data { font-size: .9rem; }
.data th, .data td { padding: .5rem .6rem; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
.data td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
.note { color: var(--muted); font-size: .85rem; }
.pill { display: inline-block; padding: .05rem .55rem; border-radius: 999px; font-size: .8rem; font-weight: 650; background: #eceff4; }
.pill.approved, .pill.captured, .pill.done { background: var(--ok-bg); color: var(--ok); }
.pill.declined, .pill.failed, .pill.rejected, .pill.expired, .pill.voided { background: var(--bad-bg); color: var(--bad); }
.pill.unknown, .pill.open, .pill.pending, .pill.in_batch { background: #fff4e0; color: #7a4b00; }
.toolbar { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between; margin-bottom: 1rem; }
.toolbar form { width: auto; }
.toolbar button { width: auto; padding: .6rem 1.1rem; }
section + section { margin-top: 1.5rem; }
@media (max-width: 30rem) { main { padding: 1rem .75rem 2rem; } .panel { padding: 1.1rem; } .row { gap: .75rem; } h1 { font-size: 1.35rem; } }
@media (prefers-reduced-motion: no-preference) { button { transition: background .15s; } }
`;

export interface PageOptions {
  readonly title: string;
  readonly nonce: string;
  readonly body: string;
  readonly script?: string;
  /** Back-office tables want the whole screen. */
  readonly wide?: boolean;
}

export function page(options: PageOptions): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(options.title)} · ${esc(SHOP_NAME)}</title>
<style nonce="${esc(options.nonce)}">${CSS}</style>
</head>
<body${options.wide ? ' class="backoffice"' : ""}>
<a class="skip" href="#main">Skip to content</a>
<header class="top"><div class="inner"><span class="logo" aria-hidden="true">C</span><span class="brand">${esc(SHOP_NAME)}</span><span class="secure">Payments by paygate</span></div></header>
<main id="main" tabindex="-1">
${options.body}
</main>
${options.script ? `<script nonce="${esc(options.nonce)}">${options.script}</script>` : ""}
</body>
</html>
`;
}

/** Only this page's inline style and script run; forms post only to this shop. */
export function securityHeaders(nonce: string): Record<string, string> {
  return {
    "content-security-policy": `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; connect-src 'self'`,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
  };
}
