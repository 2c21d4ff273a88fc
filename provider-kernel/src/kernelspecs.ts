// Discovers the Jupyter kernelspecs installed on this machine, in Jupyter's own search
// order (jupyter_core.paths.jupyter_path('kernels')): JUPYTER_PATH entries, the user data
// dir, the Python environment's prefix, then the system dirs. The first directory that has
// a kernel of a given name wins, as in jupyter_client's KernelSpecManager.
// Spec: https://jupyter-client.readthedocs.io/en/stable/kernels.html#kernel-specs
//
// Every kernel.json is validated strictly: a bad one is skipped with a logged reason and
// never offered, so the gateway cannot be asked to launch something we cannot launch.
import { constants, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateKernelSpecFile as validateTunnelSpec, type KernelSpecAd, type KernelSpecFile } from '@kinesis/protocol/tunnel';
import { KernelSpecError, KinesisError } from './errors.ts';
import type { Logger } from './logger.ts';

/** jupyter_client's kernel name pattern (kernelspec.py `_kernel_name_pat`), at most 64 long as the tunnel allows. */
export const KERNEL_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_KERNEL_JSON = 64 * 1024;
const MAX_RESOURCES = 256 * 1024;
const RESOURCE_FILES = ['logo-32x32.png', 'logo-64x64.png', 'logo-svg.svg'] as const;


export type { KernelSpecFile };

export interface LocalKernelSpec {
  readonly name: string;
  /** The kernelspec's directory ({resource_dir} in argv). */
  readonly dir: string;
  readonly spec: KernelSpecFile;
  /** Logo files, base64. */
  readonly resources: Readonly<Record<string, string>>;
}

/** Jupyter's standard kernelspec directories, highest priority first. */
export function defaultKernelspecDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  for (const p of (env['JUPYTER_PATH'] ?? '').split(path.delimiter)) if (p) dirs.push(path.join(p, 'kernels'));
  const home = env['HOME'] || os.homedir();
  dirs.push(path.join(env['JUPYTER_DATA_DIR'] || path.join(env['XDG_DATA_HOME'] || path.join(home, '.local', 'share'), 'jupyter'), 'kernels'));
  // sys.prefix/share/jupyter: we are not Python, so take the active environment's prefix.
  for (const prefix of [env['VIRTUAL_ENV'], env['CONDA_PREFIX']]) if (prefix) dirs.push(path.join(prefix, 'share', 'jupyter', 'kernels'));
  dirs.push('/usr/local/share/jupyter/kernels', '/usr/share/jupyter/kernels');
  return [...new Set(dirs.map((d) => path.resolve(d)))];
}

export interface DiscoverOptions {
  readonly dirs?: readonly string[];
  readonly logger?: Logger;
  /** PATH used to check that argv[0] exists. */
  readonly pathEnv?: string;
}

export async function discoverKernelspecs(opts: DiscoverOptions = {}): Promise<LocalKernelSpec[]> {
  const found = new Map<string, LocalKernelSpec>();
  for (const dir of opts.dirs ?? defaultKernelspecDirs()) {
    let entries: string[];
    try {
      entries = (await fs.readdir(dir)).sort();
    } catch {
      continue; // a missing standard dir is normal
    }
    for (const name of entries) {
      const specDir = path.join(dir, name);
      if (found.has(name.toLowerCase())) continue;
      try {
        const st = await fs.stat(specDir);
        if (!st.isDirectory()) continue;
        const spec = await loadKernelSpec(specDir, name, opts.pathEnv ?? process.env['PATH'] ?? '');
        found.set(name.toLowerCase(), spec);
      } catch (e) {
        opts.logger?.warn('skipping kernelspec', { dir: specDir, reason: e instanceof KernelSpecError ? e.shortMessage : String(e) });
      }
    }
  }
  return [...found.values()];
}

export async function loadKernelSpec(specDir: string, name: string, pathEnv: string): Promise<LocalKernelSpec> {
  if (!KERNEL_NAME_RE.test(name)) throw new KernelSpecError(`invalid kernel name ${JSON.stringify(name)} (allowed: letters, digits, . _ -)`);
  const file = path.join(specDir, 'kernel.json');
  let text: string;
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) throw new KernelSpecError(`${file} is not a file`);
    if (st.size > MAX_KERNEL_JSON) throw new KernelSpecError(`${file} is larger than ${MAX_KERNEL_JSON} bytes`);
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof KernelSpecError) throw e;
    throw new KernelSpecError(`cannot read ${file}`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new KernelSpecError(`${file} is not valid JSON`, { cause });
  }
  const spec = validateKernelSpecFile(raw);
  await checkExecutable(spec.argv[0] as string, pathEnv);
  return { name, dir: path.resolve(specDir), spec, resources: await readResources(specDir) };
}

/**
 * Strict kernel.json validation: the tunnel's own validator (so the gateway will accept what
 * we advertise), plus what launching needs: argv must pass {connection_file}, env names
 * must be valid variable names.
 */
export function validateKernelSpecFile(raw: unknown): KernelSpecFile {
  let spec: KernelSpecFile;
  try {
    spec = validateTunnelSpec(raw, 'kernel.json');
  } catch (e) {
    throw new KernelSpecError(e instanceof KinesisError ? e.shortMessage : String(e), { cause: e });
  }
  if (spec.argv[0] === '') throw new KernelSpecError('argv[0] must name a program');
  for (const a of spec.argv) if (a.includes('\0')) throw new KernelSpecError('argv entries must not contain NUL');
  if (!spec.argv.some((a) => a.includes('{connection_file}'))) {
    throw new KernelSpecError('argv never mentions {connection_file}, so the kernel could not learn its ports');
  }
  for (const [k, v] of Object.entries(spec.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || v.includes('\0')) throw new KernelSpecError(`env.${k} is not a valid variable`);
  }
  return spec;
}

async function checkExecutable(program: string, pathEnv: string): Promise<void> {
  if (program.includes('{')) return; // a template (e.g. {resource_dir}/run.sh): checked at launch
  const candidates = program.includes('/') ? [program] : pathEnv.split(path.delimiter).filter(Boolean).map((d) => path.join(d, program));
  for (const c of candidates) {
    try {
      await fs.access(c, constants.X_OK);
      return;
    } catch {
      // next
    }
  }
  throw new KernelSpecError(`argv[0] ${JSON.stringify(program)} is not an executable program here`);
}

async function readResources(specDir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let total = 0;
  for (const f of RESOURCE_FILES) {
    try {
      const p = path.join(specDir, f);
      const st = await fs.stat(p);
      if (!st.isFile() || total + st.size > MAX_RESOURCES) continue;
      const data = await fs.readFile(p);
      total += data.length;
      out[f] = data.toString('base64');
    } catch {
      // optional file
    }
  }
  return out;
}

export function toAd(s: LocalKernelSpec): KernelSpecAd {
  return {
    name: s.name,
    spec: {
      argv: [...s.spec.argv],
      display_name: s.spec.display_name,
      language: s.spec.language,
      ...(s.spec.interrupt_mode ? { interrupt_mode: s.spec.interrupt_mode } : {}),
      ...(s.spec.metadata ? { metadata: { ...s.spec.metadata } } : {}),
    },
    resources: { ...s.resources },
  };
}
