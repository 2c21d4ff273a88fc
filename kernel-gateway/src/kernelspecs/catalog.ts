// Kernelspecs on offer, aggregated from the connected providers: one entry per (provider
// kernelspec, hardware class), e.g. every CPU-only provider offering `python3` backs
// `python3-cpu`. Models follow Jupyter Server's /api/kernelspecs
// (jupyter_server/services/kernelspecs/handlers.py `kernelspec_model`).
import type { HardwareClass } from './naming.ts';
import { aliasDisplayName, displayName, gatewaySpecName } from './naming.ts';
import type { KernelSpecAd } from '@kinesis/protocol/tunnel';
import { pickProvider } from '../scheduler.ts';

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
  /** The hardware class; for an alias, that of its cheapest offer. */
  readonly cls: HardwareClass;
  /** The bare base name (`python3`): the cheapest provider of any hardware class. */
  readonly alias: boolean;
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
  const byPrice = (a: SpecOffer<P>, b: SpecOffer<P>): number =>
    a.provider.pricePerKwh === b.provider.pricePerKwh ? 0 : a.provider.pricePerKwh < b.provider.pricePerKwh ? -1 : 1;
  // Aliases: the provider's own name (`python3`) means "cheapest, any hardware". Notebooks
  // saved elsewhere name `python3` in their metadata, and Jupyter Server as a gateway client
  // keeps `python3` as its default until it has fetched ours once, so that name must be on offer.
  const aliases = new Map<string, SpecOffer<P>[]>();
  for (const e of byName.values()) {
    if (byName.has(e.baseSpec)) continue;
    const list = aliases.get(e.baseSpec) ?? [];
    list.push(...e.offers);
    aliases.set(e.baseSpec, list);
  }
  const all = new Map<string, CatalogEntry<P>>();
  for (const [name, e] of byName) {
    e.offers.sort(byPrice);
    // Label by the cheapest offer (CPU providers of one entry may differ in memory).
    all.set(name, { name, baseSpec: e.baseSpec, cls: e.offers[0]!.provider.hardwareClass, alias: false, offers: e.offers });
  }
  for (const [name, offers] of aliases) {
    offers.sort(byPrice);
    all.set(name, { name, baseSpec: name, cls: offers[0]!.provider.hardwareClass, alias: true, offers });
  }
  return new Map([...all.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The spec `default` names: `python3` (cheapest of any hardware) when offered, else the cheapest alias; '' when nothing is offered. */
export function defaultSpecName(catalog: ReadonlyMap<string, CatalogEntry>): string {
  let best: CatalogEntry | undefined;
  const rank = (e: CatalogEntry): [number, bigint] => [(e.baseSpec === 'python3' ? 0 : 2) + (e.alias ? 0 : 1), e.offers[0]?.provider.pricePerKwh ?? 0n];
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

/** The offers behind a kernelspec name: one hardware class (`python3-cpu`) or, for an alias (`python3`), every class. */
export function offersFor<P extends OfferSource>(catalog: ReadonlyMap<string, CatalogEntry<P>>, name: string): SpecOffer<P>[] | undefined {
  const e = catalog.get(name);
  return e ? [...e.offers] : undefined;
}

export function specModel(entry: CatalogEntry, loadOf: (providerId: string) => number): KernelSpecModel {
  const cheapest = entry.offers[0]!;
  const prices = entry.offers.map((o) => o.provider.pricePerKwh);
  const min = prices[0]!;
  const max = prices[prices.length - 1]!;
  const latencies = entry.offers.map((o) => o.provider.latencyMs).filter((l): l is number => l !== undefined);
  const spec = cheapest.ad.spec;
  const classes = [...new Map(entry.offers.map((o) => [o.provider.hardwareClass.slug, o.provider.hardwareClass])).values()];
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
      display_name: entry.alias ? aliasDisplayName(spec.display_name, classes, min, max) : displayName(spec.display_name, entry.cls, min, max),
      language: spec.language,
      interrupt_mode: spec.interrupt_mode ?? 'signal',
      metadata: {
        ...(spec.metadata ?? {}),
        kinesis: {
          baseSpec: entry.baseSpec,
          alias: entry.alias,
          hardwareClasses: classes.map((c) => c.slug),
          hardwareClass: entry.alias ? 'any' : entry.cls.slug,
          hardware: entry.cls.label,
          gpu: entry.cls.gpu,
          gpuCount: entry.cls.gpuCount,
          memoryMiB: entry.cls.memoryMiB,
          // The provider an unconstrained start would get right now.
          provider: pickProvider(
            entry.offers.map((o) => ({
              id: o.provider.id,
              pricePerKwh: o.provider.pricePerKwh,
              load: loadOf(o.provider.id),
              latencyMs: o.provider.latencyMs,
              gpuMemoryMiB: 0,
              connectedSince: o.provider.connectedSince.getTime(),
            })),
          )?.id,
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
