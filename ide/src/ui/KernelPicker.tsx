// The kernel picker: every kernelspec the gateway offers, with the hardware behind
// it (GPU or CPU, memory, price per kWh, latency, provider) when the gateway says.
import { For, Show, createResource, createSignal } from 'solid-js';
import type { JSX } from 'solid-js';
import type { KernelSpec } from '@jupyterlab/services';
import type { Services } from '../api/services.ts';
import { errorMessage } from '../api/services.ts';
import { describeHardware, hardwareOf } from './hardware.ts';

export async function loadSpecs(services: Services): Promise<KernelSpec.ISpecModels> {
  await services.kernelspecs.refreshSpecs();
  const specs = services.kernelspecs.specs;
  if (!specs) throw new Error('the server listed no kernelspecs');
  return specs;
}

export function KernelPicker(props: { services: Services; current: string | undefined; onPick: (name: string) => void; onClose: () => void }): JSX.Element {
  const [specs] = createResource(() => loadSpecs(props.services));
  const [err, setErr] = createSignal<string>();
  const list = (): KernelSpec.ISpecModel[] => {
    try {
      const s = specs();
      return s ? Object.values(s.kernelspecs).filter((x): x is KernelSpec.ISpecModel => !!x) : [];
    } catch (e) {
      setErr(errorMessage(e));
      return [];
    }
  };
  return (
    <div class="dialog-backdrop" onClick={(e) => e.target === e.currentTarget && props.onClose()}>
      <div class="dialog kernel-picker" role="dialog" aria-label="Select kernel" tabIndex={-1} ref={(el) => queueMicrotask(() => el.focus())} onKeyDown={(e) => e.key === 'Escape' && props.onClose()}>
        <h2>Select a kernel</h2>
        <Show when={!specs.loading} fallback={<p>Loading kernels…</p>}>
          <Show when={!specs.error && !err()} fallback={<p class="error">Could not list kernels: {errorMessage(specs.error ?? err())}</p>}>
            <Show when={list().length === 0}>
              <p class="empty">No kernels are on offer right now: no provider is connected to this gateway.</p>
            </Show>
            <table>
              <thead>
                <tr><th>Kernel</th><th>Hardware</th><th>Memory</th><th>Price / kWh</th><th>Latency</th><th>Provider</th></tr>
              </thead>
              <tbody>
                <For each={list()}>
                  {(spec) => {
                    const hw = hardwareOf(spec);
                    return (
                      <tr
                        class="kernel-option"
                        classList={{ current: spec.name === props.current, default: spec.name === specs()?.default }}
                        data-name={spec.name}
                        tabIndex={0}
                        onClick={() => props.onPick(spec.name)}
                        onKeyDown={(e) => e.key === 'Enter' && props.onPick(spec.name)}
                        title={describeHardware(hw)}
                      >
                        <td>{spec.display_name}{spec.name === specs()?.default ? ' (default)' : ''}</td>
                        <td>{hw ? hw.gpu ?? 'CPU' : '—'}</td>
                        <td>{hw?.memoryMiB !== undefined ? `${(hw.memoryMiB / 1024).toFixed(1)} GiB` : '—'}</td>
                        <td>{hw?.pricePerKwh !== undefined ? describeHardware({ pricePerKwh: hw.pricePerKwh }).replace(/^CPU · /, '') : '—'}</td>
                        <td>{hw?.latencyMs !== undefined ? `${Math.round(hw.latencyMs)} ms` : '—'}</td>
                        <td class="provider">{hw?.provider ?? 'local'}</td>
                      </tr>
                    );
                  }}
                </For>
              </tbody>
            </table>
          </Show>
        </Show>
        <div class="dialog-buttons"><button onClick={() => props.onClose()}>Cancel</button></div>
      </div>
    </div>
  );
}
