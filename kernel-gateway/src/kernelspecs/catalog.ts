// Kernelspecs on offer, aggregated from the connected providers: one entry per (provider
// kernelspec, hardware class), e.g. every CPU-only provider offering `python3` backs
// `python3-cpu`. Models follow Jupyter Server's /api/kernelspecs
// (jupyter_server/services/kernelspecs/handlers.py `kernelspec_model`).
import type { HardwareClass } from './naming.ts';
import { displayName, gatewaySpecName } from './naming.ts';
import type { KernelSpecAd } from '@kinesis/protocol/tunnel';

/** What the catalog needs from a provider (a ProviderLink has all of it). */
export interface OfferSource {
  readonly id: string;
  readonly name: string;
  readonly hardwareClass: HardwareClass;
  readonly pricePerKwh: bigint;
  readonly kernelspecs: readonly KernelSpecAd[];
  readonly latencyMs: number | undefined;
  readonly connectedSince: Date;
}

export interface SpecOffer<P extends OfferSource = OfferSource> {
  readonly provider: P;
  readonly ad: KernelSpecAd;
}

export interface CatalogEntry<P extends OfferSource = OfferSource> {
  readonly name: string;
  readonly baseSpec: string;
  readonly cls: HardwareClass;
  /** Cheapest first. */
  readonly offers: readonly SpecOffer<P>[];
}

export interface KernelSpecModel {
  readonly name: string;
  readonly spec: {
    readonly argv: readonly string[];
    readonly env: Readonly<Record<string, string>>;
    readonly display_name: string;
    readonly language: string;
    readonly interrupt_mode: 'signal' | 'message';
    readonly metadata: Record<string, unknown>;
  };
  readonly resources: Readonly<Record<string, string>>;
}

export function buildCatalog<P extends OfferSource>(providers: Iterable<P>): Map<string, CatalogEntry<P>> {
  const byName = new Map<string, { baseSpec: string; cls: HardwareClass; offers: SpecOffer<P>[] }>();
  for (const p of providers) {
    for (const ad of p.kernelspecs) {
      const name = gatewaySpecName(ad.name, p.hardwareClass);
      let e = byName.get(name);
      if (!e) byName.set(name, (e = { baseSpec: ad.name, cls: p.hardwareClass, offers: [] }));
      e.offers.push({ provider: p, ad });
    }
  }
  const out = new Map<string, CatalogEntry<P>>();
  for (const name of [...byName.keys()].sort()) {
    const e = byName.get(name)!;
    e.offers.sort((a, b) => (a.provider.pricePerKwh === b.provider.pricePerKwh ? 0 : a.provider.pricePerKwh < b.provider.pricePerKwh ? -1 : 1));
    out.set(name, { name, baseSpec: e.baseSpec, cls: e.cls, offers: e.offers });
  }
  return out;
}

/** The spec `default` names: the cheapest `python3` on offer, else the cheapest of any; '' when nothing is offered. */
export function defaultSpecName(catalog: ReadonlyMap<string, CatalogEntry>): string {
  let best: CatalogEntry | undefined;
  const rank = (e: CatalogEntry): [number, bigint] => [e.baseSpec === 'python3' ? 0 : 1, e.offers[0]?.provider.pricePerKwh ?? 0n];
  for (const e of catalog.values()) {
    if (!best) {
      best = e;
      continue;
    }
    const [a1, a2] = rank(e);
    const [b1, b2] = rank(best);
    if (a1 < b1 || (a1 === b1 && a2 < b2)) best = e;
  }
  return best?.name ?? '';
}

/** Provider kernelspec names of the form `<base>-<class>` resolve exactly; a bare base name (`python3`) resolves to every class offering it. */
export function offersFor<P extends OfferSource>(catalog: ReadonlyMap<string, CatalogEntry<P>>, name: string): SpecOffer<P>[] | undefined {
  const exact = catalog.get(name);
  if (exact) return [...exact.offers];
  const any = [...catalog.values()].filter((e) => e.baseSpec === name).flatMap((e) => e.offers);
  return any.length > 0 ? any : undefined;
}

export function specModel(entry: CatalogEntry, loadOf: (providerId: string) => number): KernelSpecModel {
  const cheapest = entry.offers[0]!;
  const prices = entry.offers.map((o) => o.provider.pricePerKwh);
  const min = prices[0]!;
  const max = prices[prices.length - 1]!;
  const latencies = entry.offers.map((o) => o.provider.latencyMs).filter((l): l is number => l !== undefined);
  const spec = cheapest.ad.spec;
  const resources: Record<string, string> = {};
  for (const file of Object.keys(cheapest.ad.resources)) {
    // Jupyter Server keys logos by file name without extension (`logo-64x64`), other files by name.
    const key = file.startsWith('logo-') ? file.replace(/\.[^.]*$/, '') : file;
    resources[key] = `/kernelspecs/${encodeURIComponent(entry.name)}/${encodeURIComponent(file)}`;
  }
  return {
    name: entry.name,
    spec: {
      argv: spec.argv,
      env: {},
      display_name: displayName(spec.display_name, entry.cls, min, max),
      language: spec.language,
      interrupt_mode: spec.interrupt_mode ?? 'signal',
      metadata: {
        ...(spec.metadata ?? {}),
        kinesis: {
          baseSpec: entry.baseSpec,
          hardwareClass: entry.cls.slug,
          hardware: entry.cls.label,
          gpu: entry.cls.gpu,
          gpuCount: entry.cls.gpuCount,
          memoryMiB: entry.cls.memoryMiB,
          pricePerKwh: min.toString(),
          latencyMs: latencies.length > 0 ? Math.min(...latencies) : null,
          providers: entry.offers.map((o) => ({
            id: o.provider.id,
            name: o.provider.name,
            pricePerKwh: o.provider.pricePerKwh.toString(),
            latencyMs: o.provider.latencyMs ?? null,
            kernels: loadOf(o.provider.id),
          })),
        },
      },
    },
    resources,
  };
}
