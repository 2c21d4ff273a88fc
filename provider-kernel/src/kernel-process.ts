// One kernel OS process: spawned in its own process group (detached → setsid), with a
// minimal environment and its own working directory. Signals go to the whole group, since
// kernels start children (subprocess, multiprocessing, compilers) that must not outlive them.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from './logger.ts';

const STDERR_TAIL_LINES = 40;

export interface SpawnOptions {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly logger: Logger;
  readonly kernelId: string;
  /** Run as this user (needs root or CAP_SETUID/CAP_SETGID, and CAP_KILL to signal it). */
  readonly runAs?: { readonly uid: number; readonly gid: number };
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class KernelProcess {
  readonly pid: number;
  /** Resolves once, when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  private readonly child: ChildProcess;
  private exitInfo: ExitInfo | undefined;
  private readonly tail: string[] = [];

  constructor(opts: SpawnOptions) {
    const [cmd, ...args] = opts.argv;
    if (cmd === undefined) throw new Error('empty argv');
    this.child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env,
      detached: true, // new session and process group: the group id is the pid
      ...(opts.runAs ? { uid: opts.runAs.uid, gid: opts.runAs.gid } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // 'spawn' failures (ENOENT, EACCES) arrive as 'error' with no 'exit'.
    this.exited = new Promise<ExitInfo>((resolve) => {
      const done = (info: ExitInfo): void => {
        if (this.exitInfo) return;
        this.exitInfo = info;
        resolve(info);
      };
      this.child.once('exit', (code, signal) => done({ code, signal }));
      this.child.once('error', (e) => {
        this.tail.push(`spawn failed: ${e.message}`);
        done({ code: null, signal: null });
      });
    });
    this.pid = this.child.pid ?? -1;
    // Drain the pipes so a chatty kernel never blocks on a full pipe; keep a short tail
    // for the death reason and the debug log.
    const collect = (stream: NodeJS.ReadableStream | null, name: string): void => {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        for (const line of chunk.split('\n')) {
          if (!line) continue;
          this.tail.push(line.slice(0, 500));
          if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift();
          opts.logger.debug(`kernel ${name}`, { kernelId: opts.kernelId, line: line.slice(0, 500) });
        }
      });
    };
    collect(this.child.stdout, 'stdout');
    collect(this.child.stderr, 'stderr');
  }

  get alive(): boolean {
    return this.exitInfo === undefined && this.pid > 0;
  }

  /** Last lines the kernel wrote to stdout/stderr (for error messages). */
  stderrTail(): string {
    return this.tail.join('\n');
  }

  /**
   * Sends `sig` to the kernel's process group. After the kernel itself has exited the
   * group may still hold its children, so this is also how they are reaped.
   */
  signalGroup(sig: NodeJS.Signals): boolean {
    if (this.pid <= 0) return false;
    try {
      process.kill(-this.pid, sig);
      return true;
    } catch {
      try {
        // The group is gone; the process itself may still be there (it called setpgid).
        if (this.alive) return process.kill(this.pid, sig);
      } catch {
        // already gone
      }
      return false;
    }
  }

  /** Waits up to `ms` for exit; `true` if it exited. */
  async waitExit(ms: number): Promise<boolean> {
    if (!this.alive) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((r) => {
      timer = setTimeout(() => r(false), ms);
    });
    const r = await Promise.race([this.exited.then(() => true as const), timeout]);
    clearTimeout(timer);
    return r;
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; then SIGKILL any leftover children. */
  async terminate(graceMs: number): Promise<void> {
    if (this.alive) {
      this.signalGroup('SIGTERM');
      if (!(await this.waitExit(graceMs))) {
        this.signalGroup('SIGKILL');
        await this.waitExit(5000);
      }
    }
    this.signalGroup('SIGKILL'); // orphans left in the group
  }
}
