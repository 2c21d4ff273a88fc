// Where a new kernel goes: the kernelspec asked for (the catalog's default when none is),
// and among the connected providers that offer it, the one scheduler.ts ranks first under
// the client's placement constraints, given how many kernels each already runs.
import { defaultSpecName, offersFor, type CatalogEntry } from '../kernelspecs/catalog.ts';
import { PlacementError } from '../errors.ts';
import type { ProviderLink } from '../providers/link.ts';
import { pickProvider, type PlacementConstraints } from '../scheduler.ts';

export interface Placement {
  readonly link: ProviderLink;
  /** The provider's own kernelspec name, e.g. `python3`. */
  readonly baseSpec: string;
}

/** Throws PlacementError when nothing on offer fits. */
export function place(
  catalog: ReadonlyMap<string, CatalogEntry<ProviderLink>>,
  specName: string | undefined,
  constraints: PlacementConstraints,
  loadOf: (providerId: string) => number,
): Placement {
  const name = specName || defaultSpecName(catalog);
  if (!name) throw new PlacementError('no kernelspec is on offer: no provider is connected');
  const offers = offersFor(catalog, name);
  if (!offers) throw new PlacementError(`no kernelspec named ${JSON.stringify(name.slice(0, 128))} is on offer`);
  const pick = pickProvider(
    offers.map((offer) => ({
      offer,
      id: offer.provider.id,
      pricePerKwh: offer.provider.pricePerKwh,
      load: loadOf(offer.provider.id),
      latencyMs: offer.provider.latencyMs,
      gpuMemoryMiB: offer.provider.hardwareClass.gpu ? offer.provider.hardwareClass.memoryMiB : 0,
      connectedSince: offer.provider.connectedSince.getTime(),
    })),
    constraints,
  );
  if (!pick) throw new PlacementError(`no connected provider offering ${name} fits the placement constraints`);
  return { link: pick.offer.provider, baseSpec: pick.offer.ad.name };
}
