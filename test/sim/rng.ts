// A small seeded PRNG (sfc32, seeded through splitmix32): the whole
// simulation draws from one of these, so a seed replays a run exactly.

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** A UUID-shaped id (version 4 layout) from this stream. */
  uuid(): string;
  /** An independent stream derived from this one (for per-subsystem draws). */
  fork(): Rng;
}

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export function createRng(seed: number): Rng {
  const init = splitmix32(seed);
  let a = init();
  let b = init();
  let c = init();
  let d = init();
  const u32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) u32(); // mix away the seed's structure
  const hex = (n: number) => u32().toString(16).padStart(8, "0").slice(0, n);
  const rng: Rng = {
    next: () => u32() / 0x1_0000_0000,
    int: (lo, hi) => lo + Math.floor(rng.next() * (hi - lo + 1)),
    chance: (p) => p > 0 && rng.next() < p,
    pick(items) {
      if (items.length === 0) throw new Error("pick from an empty list");
      return items[Math.floor(rng.next() * items.length)]!;
    },
    uuid: () => `${hex(8)}-${hex(4)}-4${hex(3)}-8${hex(3)}-${hex(8)}${hex(4)}`,
    fork: () => createRng(u32()),
  };
  return rng;
}
