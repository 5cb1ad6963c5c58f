// The shop's one demo cart. The amount charged is computed here, on the
// server, from the cart: never taken from what the browser posts.
import { assert } from "@paygate/money";

export interface CartLine {
  readonly name: string;
  readonly quantity: number;
  readonly unitMinor: bigint;
}

export interface Cart {
  readonly currency: string;
  readonly lines: readonly CartLine[];
  readonly shippingMinor: bigint;
}

export const DEMO_CART: Cart = Object.freeze({
  currency: "USD",
  lines: Object.freeze([
    { name: "Paygate enamel mug", quantity: 1, unitMinor: 1200n },
    { name: "Sticker pack", quantity: 2, unitMinor: 350n },
  ]),
  shippingMinor: 499n,
});

export function lineTotalMinor(line: CartLine): bigint {
  return line.unitMinor * BigInt(line.quantity);
}

export function cartTotalMinor(cart: Cart): bigint {
  const total = cart.lines.reduce((sum, l) => sum + lineTotalMinor(l), cart.shippingMinor);
  assert(total > 0n, "a cart always costs something");
  return total;
}
