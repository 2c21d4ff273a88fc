// The kinesis-gateway process: starts through the bin shim, serves, exits cleanly on SIGTERM
// and SIGINT, and refuses bad flags with exit code 2.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', 'bin', 'kinesis-gateway.mjs');

/** Runs the bin with `node <bin>`, or `direct`ly as `npx kinesis-gateway` does (through its shebang line). */
function run(args: string[], direct = false): { out: Promise<{ code: number | null; stdout: string; stderr: string }>; child: ReturnType<typeof spawn> } {
  const child = direct ? spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const out = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => child.on('exit', (code) => r({ code, stdout, stderr })));
  return { out, child };
}

describe('kinesis-gateway CLI', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`serves and stops cleanly on ${signal}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'kinesis-cli-'));
      // SIGTERM's run goes through the shebang, which gives node its heap flag.
      const { out, child } = run(['--port', '0', '--token', 'cli-token', '--data-dir', dir, '--log-level', 'warn'], signal === 'SIGTERM');
      try {
        const url = await new Promise<string>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no listening line')), 20_000);
          child.stdout!.on('data', (d: Buffer) => {
            const m = /listening on (http:\/\/\S+)/.exec(d.toString());
            if (m) {
              clearTimeout(t);
              resolve(m[1]!);
            }
          });
        });
        const r = await fetch(`${url}/api/status`, { headers: { authorization: 'token cli-token' } });
        expect(r.status).toBe(200);
        if (signal === 'SIGTERM') expect(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0')).toContain('--initial-old-space-size=128');
        child.kill(signal);
        expect((await out).code).toBe(0);
      } finally {
        child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('exits 2 with a clear message and the usage on bad flags', async () => {
    const { out } = run(['--port', 'nope', '--token', 't', '--data-dir', '/tmp/x']);
    const r = await out;
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--port must be a whole number/);
    expect(r.stderr).toMatch(/Usage: kinesis-gateway/);
  });

  it('prints the usage on --help', async () => {
    const r = await run(['--help']).out;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--cull-idle-timeout/);
  });
});

describe('the bins run node with the same flags', () => {
  it('kinesis-provider starts node as kinesis-gateway does', () => {
    const first = (f: string): string => readFileSync(f, 'utf8').split('\n', 1)[0]!;
    expect(first(BIN)).toBe('#!/usr/bin/env -S node --initial-old-space-size=128');
    expect(first(join(import.meta.dirname, '..', '..', 'provider-kernel', 'bin', 'kinesis-provider.mjs'))).toBe(first(BIN));
  });
});
