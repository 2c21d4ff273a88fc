// The ABI and bytecode shipped in client/artifacts/ must be what contracts/src compiles to.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ARTIFACT_PATHS, compileContracts, renderArtifacts } from '../script/compile.ts';

describe('client artifacts', () => {
  it('are up to date with contracts/src (else: npx tsx contracts/script/compile.ts)', { timeout: 120_000 }, () => {
    const { abi, bytecode } = renderArtifacts(compileContracts());
    expect(readFileSync(ARTIFACT_PATHS.abi, 'utf8') === abi, 'abi.ts is stale').toBe(true);
    expect(readFileSync(ARTIFACT_PATHS.bytecode, 'utf8') === bytecode, 'bytecode.ts is stale').toBe(true);
  });
});
