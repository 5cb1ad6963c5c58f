// @paygate/vocab: the words every paygate service and client shares (id
// shapes, idempotency keys, printable text, failure reasons and their class).
// No Connect, no storage: a domain, a CLI and a browser bundle may import it.
export * from "./ids.js";
export * from "./text.js";
export * from "./reasons.js";
export * from "./links.js";
export * from "./caller.js";
export * from "./result.js";
export * from "./legs.js";
export * from "./accounts.js";
