// The card-data key: made once (crypto-random, mode 0600) in the gateway's
// data dir on first start, read on every later start. Losing it makes every
// stored card unusable (numbers can no longer be looked up), so it is never
// regenerated over an existing file.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CARD_SECRET_BYTES } from "../domain/cards-crypto.js";

export const CARD_SECRET_FILE = "card-secret.key";

/** A key every replica shares: the file must exist (it is never made here). */
export function loadCardSecretFile(file: string): Buffer {
  const secret = Buffer.from(readFileSync(file, "utf8").trim(), "hex");
  if (secret.length !== CARD_SECRET_BYTES) throw new Error(`${file} must hold ${CARD_SECRET_BYTES} bytes as hex`);
  return secret;
}

export function loadOrCreateCardSecret(dataDir: string): Buffer {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, CARD_SECRET_FILE);
  try {
    // "wx": fails if it exists, so two starts cannot both write one.
    writeFileSync(file, randomBytes(CARD_SECRET_BYTES).toString("hex") + "\n", { flag: "wx", mode: 0o600 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  const secret = Buffer.from(readFileSync(file, "utf8").trim(), "hex");
  if (secret.length !== CARD_SECRET_BYTES) throw new Error(`${file} must hold ${CARD_SECRET_BYTES} bytes as hex`);
  return secret;
}
