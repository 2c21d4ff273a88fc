export { prng as mulberry32 } from '@kinesis/protocol/testing/prng';
// Seeded PRNG for the meter's property tests and benchmark (mulberry32): a failing seed

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}
