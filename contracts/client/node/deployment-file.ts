// Reading and writing deployment files. Node only.
import { readFileSync, renameSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { parseDeployment, type Deployment } from '../types.ts';

/** Deployment files are tiny; anything larger is not one (checked before parsing). */
const MAX_BYTES = 64 * 1024;

export function readDeploymentFile(path: string): Deployment {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (cause) {
    throw new InvalidArgumentError('deployment file', `cannot read ${path}`, { cause });
  }
  if (size > MAX_BYTES) throw new InvalidArgumentError('deployment file', `${path} is ${size} bytes, more than ${MAX_BYTES}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new InvalidArgumentError('deployment file', `${path} is not JSON`, { cause });
  }
  return parseDeployment(json);
}

/** Writes atomically (temp file + rename), so a reader never sees half a file. */
export function writeDeploymentFile(path: string, deployment: Deployment): void {
  const d = parseDeployment(deployment);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(d, null, 2)}\n`);
  renameSync(tmp, path);
}
