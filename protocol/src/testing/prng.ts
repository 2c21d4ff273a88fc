// A seeded PRNG (mulberry32) for randomized and fuzz tests: a failing seed reproduces.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Mutates a copy of `buf`: flips, truncations, insertions, overwrites of length fields. */
export function mutate(rand: () => number, buf: Uint8Array): Buffer {
  const b = Buffer.from(buf);
  const op = Math.floor(rand() * 5);
  const at = Math.floor(rand() * Math.max(1, b.length));
  switch (op) {
    case 0:
      if (b.length) b[at] = (b[at] ?? 0) ^ (1 << Math.floor(rand() * 8));
      return b;
    case 1:
      return b.subarray(0, at);
    case 2:
      return Buffer.concat([b.subarray(0, at), randomBytes(rand, 1 + Math.floor(rand() * 16)), b.subarray(at)]);
    case 3:
      if (b.length >= 8) b.writeUInt32LE(Math.floor(rand() * 0xffffffff), Math.min(at, b.length - 4) & ~3);
      return b;
    default:
      return randomBytes(rand, Math.floor(rand() * 64));
  }
}
