// Keyed hashes of card data. The key is 32 random bytes made on the gateway's
// first start and kept in its data dir, apart from the database: a copy of
// gateway.db alone reveals neither numbers nor CVCs. (A CVC has only 1,000
// values, so a slow unkeyed hash would not protect it; the key does.)
import { createHmac, timingSafeEqual } from "node:crypto";
import type { CardHasher } from "./cards-ports.js";

export const CARD_SECRET_BYTES = 32;

export function createCardHasher(secret: Buffer): CardHasher {
  if (secret.length < CARD_SECRET_BYTES)
    throw new RangeError(`the card secret must be at least ${CARD_SECRET_BYTES} bytes`);
  const mac = (...parts: string[]) => createHmac("sha256", secret).update(parts.join("\0")).digest("base64url");
  return {
    panHmac: (pan) => mac("pan.v1", pan),
    cvcHash: (cardId, cvc) => mac("cvc.v1", cardId, cvc),
    cvcMatches(cardId, cvc, stored) {
      const a = Buffer.from(mac("cvc.v1", cardId, cvc));
      const b = Buffer.from(stored);
      return a.length === b.length && timingSafeEqual(a, b);
    },
  };
}
