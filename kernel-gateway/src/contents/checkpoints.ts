// File checkpoints as Jupyter Server's FileCheckpoints keeps them: one checkpoint per
// file, id "checkpoint", stored at `<dir>/.ipynb_checkpoints/<base>-checkpoint<ext>`
// (jupyter_server/services/contents/filecheckpoints.py), so a notebook directory
// moved between Jupyter and Kinesis keeps its checkpoints.
import { copyFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { notFound } from '../http/errors.ts';

export const CHECKPOINT_ID = 'checkpoint';
const DIR = '.ipynb_checkpoints';

export interface CheckpointModel {
  readonly id: string;
  readonly last_modified: string;
}

export function checkpointPath(osPath: string, id = CHECKPOINT_ID): string {
  const dir = path.dirname(osPath);
  const base = path.basename(osPath);
  const ext = path.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  return path.join(dir, DIR, `${stem}-${id}${ext}`);
}

async function modelOf(cp: string, id: string): Promise<CheckpointModel | undefined> {
  try {
    const st = await stat(cp);
    return { id, last_modified: st.mtime.toISOString() };
  } catch {
    return undefined;
  }
}

export async function listCheckpoints(osPath: string): Promise<CheckpointModel[]> {
  const m = await modelOf(checkpointPath(osPath), CHECKPOINT_ID);
  return m ? [m] : [];
}

export async function createCheckpoint(osPath: string): Promise<CheckpointModel> {
  const cp = checkpointPath(osPath);
  await mkdir(path.dirname(cp), { recursive: true });
  await copyFile(osPath, cp);
  return (await modelOf(cp, CHECKPOINT_ID)) as CheckpointModel;
}

export async function restoreCheckpoint(osPath: string, id: string, apiPath: string): Promise<void> {
  const cp = checkpointPath(osPath, id);
  if (!(await modelOf(cp, id))) throw notFound(`checkpoint ${id} does not exist for ${apiPath}`);
  // Copy to a temporary name and rename over the file, so a crash mid-restore never
  // leaves a half-written notebook.
  const tmp = `${osPath}.~restore`;
  await copyFile(cp, tmp);
  await rename(tmp, osPath);
}

export async function deleteCheckpoint(osPath: string, id: string, apiPath: string): Promise<void> {
  const cp = checkpointPath(osPath, id);
  if (!(await modelOf(cp, id))) throw notFound(`checkpoint ${id} does not exist for ${apiPath}`);
  await rm(cp);
}

/** Moves a file's checkpoints along with a rename (FileContentsManager.rename does the same). */
export async function renameCheckpoints(oldOs: string, newOs: string): Promise<void> {
  const from = checkpointPath(oldOs);
  if (!(await modelOf(from, CHECKPOINT_ID))) return;
  const to = checkpointPath(newOs);
  await mkdir(path.dirname(to), { recursive: true });
  await rename(from, to);
}

export async function deleteCheckpoints(osPath: string): Promise<void> {
  await rm(checkpointPath(osPath), { force: true });
}
