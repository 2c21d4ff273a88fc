// GET /api/providers (and /api/providers/{id}): who is connected, with what, at what price.
import { notFound } from '../http/errors.ts';
import { sendJson, type Route } from '../http/router.ts';
import { gatewaySpecName } from '../kernelspecs/naming.ts';
import type { KernelManager } from '../kernels/manager.ts';
import type { ProviderLink } from './link.ts';

export interface ProviderModel {
  readonly id: string;
  readonly address: string;
  readonly name: string;
  readonly hardware: ProviderLink['hardware'];
  readonly hardwareClass: string;
  readonly hardwareLabel: string;
  readonly kernelspecs: readonly string[];
  readonly pricePerKwh: string;
  readonly connectedSince: string;
  readonly kernels: number;
  readonly latencyMs: number | null;
}

export function providerModel(link: ProviderLink, kernels: number): ProviderModel {
  return {
    id: link.id,
    address: link.id,
    name: link.name,
    hardware: link.hardware,
    hardwareClass: link.hardwareClass.slug,
    hardwareLabel: link.hardwareClass.label,
    kernelspecs: link.kernelspecs.map((k) => gatewaySpecName(k.name, link.hardwareClass)),
    pricePerKwh: link.pricePerKwh.toString(),
    connectedSince: link.connectedSince.toISOString(),
    kernels,
    latencyMs: link.latencyMs ?? null,
  };
}

export function providerRoutes(manager: KernelManager): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/providers',
      handler: ({ res }) => sendJson(res, 200, manager.providers.list().map((l) => providerModel(l, manager.loadOf(l.id)))),
    },
    {
      method: 'GET',
      path: '/api/providers/:id',
      handler: ({ res, params }) => {
        const link = manager.providers.get(params['id'] ?? '');
        if (!link) throw notFound(`provider ${(params['id'] ?? '').slice(0, 64)} is not connected`);
        sendJson(res, 200, providerModel(link, manager.loadOf(link.id)));
      },
    },
  ];
}
