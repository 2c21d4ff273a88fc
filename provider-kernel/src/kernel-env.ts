// The environment a kernel starts with. Deliberately minimal: the provider's own
// environment (which may hold the owner's secrets, cloud credentials, SSH agent sockets) is
// NOT inherited. A kernel gets:
//   1. a small base (PATH, LANG, HOME = its own working dir, TMPDIR inside it),
//   2. the few variables the owner chose to pass through (GPU selection, library paths),
//   3. what the client sent, already cut down to KERNEL_* and the tunnel's allow-list,
//      then what the provider sets itself (the GPU the kernel was given),
//   4. the kernelspec's own `env`, with ${VAR} substituted as jupyter_client does
//      (string.Template.safe_substitute: unknown names stay as written).
import path from 'node:path';
import { filterKernelEnv, type DeviceInfo } from '@kinesis/protocol/tunnel';

/** Provider variables passed through to kernels when set (the owner's own GPU/library choices). */
export const DEFAULT_PASS_ENV: readonly string[] = ['CUDA_VISIBLE_DEVICES', 'NVIDIA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER', 'ROCR_VISIBLE_DEVICES', 'HIP_VISIBLE_DEVICES', 'LD_LIBRARY_PATH', 'TZ', 'LC_ALL'];

// Never taken from a client, whatever an allow-list says: they change what code runs.
const CLIENT_DENY = /^(PATH|HOME|TMPDIR|LD_.*|PYTHON(PATH|HOME|STARTUP|USERBASE)|JPY_PARENT_PID|KINESIS_KERNEL_ID|NODE_OPTIONS)$/;

/**
 * The variables that give a kernel its one GPU. NVIDIA: the NVML / nvidia-smi index, by PCI
 * bus order. AMD: the card's place among the AMD cards, which is ROCm's device order.
 */
export function gpuEnv(devices: readonly DeviceInfo[], gpu: number): Record<string, string> {
  const gpus = devices.filter((d) => d.kind === 'gpu');
  const dev = gpus.find((d) => d.index === gpu);
  if (dev?.vendor === 'AMD') return { ROCR_VISIBLE_DEVICES: String(gpus.filter((d) => d.vendor === 'AMD').indexOf(dev)) };
  return { CUDA_VISIBLE_DEVICES: String(gpu), CUDA_DEVICE_ORDER: 'PCI_BUS_ID' };
}

export interface KernelEnvOptions {
  readonly kernelId: string;
  readonly workDir: string;
  readonly clientEnv: Readonly<Record<string, unknown>>;
  readonly specEnv?: Readonly<Record<string, string>>;
  readonly passEnv?: readonly string[];
  readonly providerEnv?: NodeJS.ProcessEnv;
  /** Set by the provider itself (e.g. the GPU this kernel was given); beats the client's. */
  readonly extra?: Readonly<Record<string, string>>;
}

export function buildKernelEnv(o: KernelEnvOptions): Record<string, string> {
  const penv = o.providerEnv ?? process.env;
  const env: Record<string, string> = {
    PATH: penv['PATH'] || '/usr/local/bin:/usr/bin:/bin',
    LANG: penv['LANG'] || 'C.UTF-8',
    HOME: o.workDir,
    TMPDIR: path.join(o.workDir, '.tmp'),
  };
  for (const k of o.passEnv ?? DEFAULT_PASS_ENV) {
    const v = penv[k];
    if (v !== undefined) env[k] = v;
  }
  for (const [k, v] of Object.entries(filterKernelEnv(o.clientEnv))) if (!CLIENT_DENY.test(k)) env[k] = v;
  Object.assign(env, o.extra);
  // ipykernel's parent poller exits the kernel when this pid goes away, so a provider that is
  // killed with SIGKILL does not leave kernels behind (ipykernel kernelapp.init_poller).
  env['JPY_PARENT_PID'] = String(process.pid);
  env['KINESIS_KERNEL_ID'] = o.kernelId;
  for (const [k, v] of Object.entries(o.specEnv ?? {})) env[k] = substitute(v, env);
  return env;
}

/** Python's string.Template.safe_substitute: $$ → $, ${name} and $name from `vars`, unknown left alone. */
export function substitute(template: string, vars: Readonly<Record<string, string>>): string {
  return template.replace(/\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})/g, (m, dollar: string | undefined, bare: string | undefined, braced: string | undefined) => {
    if (dollar) return '$';
    const name = bare ?? braced ?? '';
    return Object.prototype.hasOwnProperty.call(vars, name) ? (vars[name] as string) : m;
  });
}
