// What the gateway remembers across its own restart, in `<dataDir>/state.json`: the kernels it
// placed (id, kernelspec names, provider) and the Jupyter sessions that tie paths to them.
// Kernels run on providers and outlive a gateway restart; without this record a restarted
// gateway knew nothing of them until their provider reconnected, so a client polling
// /api/sessions or /api/kernels in between (as @jupyterlab/services does every few seconds)
// saw its session gone, disposed it, and started a new kernel, and the old one's state was
// lost. Restored kernels are `starting` until their provider reconnects (kernels/manager.ts
// `restore`). The file is rewritten whole, atomically (temp file, then rename), mode 0600.
import { closeSync, fsyncSync, openSync, renameSync, readFileSync, writeFileSync } from 'node:fs';
import { ADDRESS_RE, UUID_RE, arr, int, record, str } from '@kinesis/protocol/validate';
import { errorText, type Logger } from './logger.ts';

export interface KernelRecord {
  readonly id: string;
  /** The gateway kernelspec name, e.g. `python3-cpu`. */
  readonly name: string;
  /** The provider's own kernelspec name, e.g. `python3`. */
  readonly baseSpec: string;
  readonly providerId: string;
  /** Declared dead before the restart: it stays dead (its provider is told to stop it). */
  readonly dead?: boolean;
}

/** A kernel deleted here, remembered so that its provider is told to stop it if it still runs it. */
export interface TombstoneRecord {
  readonly id: string;
  readonly providerId: string;
}

export interface SessionRecord {
  readonly id: string;
  readonly path: string;
  readonly name: string;
  readonly type: string;
  readonly kernelId: string;
}

export interface GatewayState {
  readonly kernels: readonly KernelRecord[];
  readonly sessions: readonly SessionRecord[];
  readonly tombstones: readonly TombstoneRecord[];
}

const VERSION = 1;
const MAX_ROWS = 100_000;
const EMPTY: GatewayState = { kernels: [], sessions: [], tombstones: [] };

/**
 * Reads the state file. A missing file is an empty state; an unreadable or malformed one is
 * logged and ignored (the gateway starts as if new, never refuses to start); a malformed row
 * is skipped, and so is a session whose kernel is not in the file.
 */
export function loadState(file: string, logger: Logger): GatewayState {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn('cannot read the gateway state file; starting without it', { file, error: errorText(e) });
    return EMPTY;
  }
  try {
    const top = record(JSON.parse(text), 'state');
    if (int(top['version'], 'version') !== VERSION) throw new Error(`unknown state file version ${String(top['version'])}`);
    let skipped = 0;
    // A table past MAX_ROWS keeps its first rows rather than sinking the whole file.
    const rows = <T>(v: unknown, field: string, parse: (r: Record<string, unknown>) => T): T[] =>
      arr(Array.isArray(v) ? v.slice(0, MAX_ROWS) : v, field, MAX_ROWS).flatMap((r) => {
        try {
          return [parse(record(r, field))];
        } catch {
          skipped++;
          return [];
        }
      });
    const kernels = rows(top['kernels'], 'kernels', (r) => ({
      id: str(r['id'], 'id', { re: UUID_RE }).toLowerCase(),
      name: str(r['name'], 'name', { min: 1, max: 256 }),
      baseSpec: str(r['baseSpec'], 'baseSpec', { min: 1, max: 256 }),
      providerId: str(r['providerId'], 'providerId', { re: ADDRESS_RE }),
      ...(r['dead'] === true ? { dead: true } : {}),
    }));
    const tombstones = rows(top['tombstones'] ?? [], 'tombstones', (r) => ({
      id: str(r['id'], 'id', { re: UUID_RE }).toLowerCase(),
      providerId: str(r['providerId'], 'providerId', { re: ADDRESS_RE }).toLowerCase(),
    }));
    const known = new Set(kernels.map((k) => k.id));
    const sessions = rows(top['sessions'], 'sessions', (r) => {
      const kernelId = str(r['kernelId'], 'kernelId', { re: UUID_RE }).toLowerCase();
      if (!known.has(kernelId)) throw new Error('a session of a kernel not in the file');
      return { id: str(r['id'], 'id', { re: UUID_RE }), path: str(r['path'], 'path', { max: 4096 }), name: str(r['name'], 'name', { max: 4096 }), type: str(r['type'], 'type', { max: 64 }), kernelId };
    });
    if (skipped > 0) logger.warn('skipped malformed rows of the gateway state file', { file, skipped });
    return { kernels, sessions, tombstones };
  } catch (e) {
    logger.warn('the gateway state file is malformed; starting without it', { file, error: errorText(e) });
    return EMPTY;
  }
}

/**
 * Writes the state file atomically and durably: a temp file of this process, flushed to disk,
 * then renamed over the old one. Throws on I/O errors (the caller logs them). One gateway per
 * data dir (the ledger's SQLite is not shared either).
 */
export function saveState(file: string, state: GatewayState): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, JSON.stringify({ version: VERSION, kernels: state.kernels, sessions: state.sessions, tombstones: state.tombstones }));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
