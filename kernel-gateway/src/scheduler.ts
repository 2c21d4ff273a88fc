// Placement: among the providers that offer the requested kernelspec and fit the client's
// constraints, the cheapest wins; ties go to the least loaded, then the lowest measured
// latency (tunnel ping round trip), then the longest connected, then the lowest id, so the
// choice is deterministic.
export interface Candidate {
  readonly id: string;
  readonly pricePerKwh: bigint;
  /** Kernels the gateway has running on it. */
  readonly load: number;
  /** Tunnel ping round trip, ms; undefined until measured (sorts last). */
  readonly latencyMs: number | undefined;
  /** Memory of one GPU, MiB; 0 for CPU-only providers. */
  readonly gpuMemoryMiB: number;
  readonly connectedSince: number;
}

export interface PlacementConstraints {
  readonly provider?: string;
  readonly maxPricePerKwh?: bigint;
  readonly minGpuMemoryMiB?: number;
}

export function fits(c: Candidate, k: PlacementConstraints): boolean {
  if (k.provider !== undefined && c.id.toLowerCase() !== k.provider.toLowerCase()) return false;
  if (k.maxPricePerKwh !== undefined && c.pricePerKwh > k.maxPricePerKwh) return false;
  if (k.minGpuMemoryMiB !== undefined && c.gpuMemoryMiB < k.minGpuMemoryMiB) return false;
  return true;
}

export function compareCandidates(a: Candidate, b: Candidate): number {
  if (a.pricePerKwh !== b.pricePerKwh) return a.pricePerKwh < b.pricePerKwh ? -1 : 1;
  if (a.load !== b.load) return a.load - b.load;
  const la = a.latencyMs ?? Number.POSITIVE_INFINITY;
  const lb = b.latencyMs ?? Number.POSITIVE_INFINITY;
  if (la !== lb) return la < lb ? -1 : 1;
  if (a.connectedSince !== b.connectedSince) return a.connectedSince - b.connectedSince;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function pickProvider<C extends Candidate>(candidates: readonly C[], constraints: PlacementConstraints = {}): C | undefined {
  let best: C | undefined;
  for (const c of candidates) {
    if (!fits(c, constraints)) continue;
    if (!best || compareCandidates(c, best) < 0) best = c;
  }
  return best;
}
