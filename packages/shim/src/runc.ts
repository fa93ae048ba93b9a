/**
 * The OCI runtime command line (runc, and crun which speaks the same): one method per
 * subcommand the shim uses. Errors carry the runtime's own message, taken from its JSON
 * log (only what this call appended) or its stderr.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { NotFoundError, UnknownError } from '@berth/api';
import type { Reaper } from './reaper';

export type StdioSlot = number | 'ignore' | 'pipe';

export interface RuncConfig {
  /** Binary name or path; looked up on PATH. */
  binary: string;
  /** State directory, namespace included (<root>/<namespace>). */
  root: string;
  /** The JSON log runc appends to (<bundle>/log.json). */
  log: string;
  systemdCgroup: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CreateOptions {
  pidFile: string;
  consoleSocket?: string;
  stdio: [StdioSlot, StdioSlot, StdioSlot];
  noPivot?: boolean;
  noNewKeyring?: boolean;
}

export interface ExecOptions {
  pidFile: string;
  consoleSocket?: string;
  stdio: [StdioSlot, StdioSlot, StdioSlot];
}

export class RuntimeError extends UnknownError {}

function logSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The last error message runc wrote to its JSON log after `offset`. */
export function lastLogError(path: string, offset: number): string {
  let text: string;
  try {
    const fd = openSync(path, 'r');
    try {
      const size = statSync(path).size - offset;
      if (size <= 0) return '';
      const buf = Buffer.alloc(Math.min(size, 1 << 20));
      const n = readSync(fd, buf, 0, buf.length, offset);
      text = buf.subarray(0, n).toString();
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
  let found = '';
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && typeof entry.msg === 'string')
        found = entry.msg;
    } catch {
      // not JSON (crun writes plain text with some flags): keep the line itself
      found = line.trim();
    }
  }
  return found;
}

export class Runc {
  constructor(
    private readonly reaper: Reaper,
    readonly config: RuncConfig,
  ) {}

  private globalArgs(): string[] {
    const args = ['--root', this.config.root, '--log', this.config.log, '--log-format', 'json'];
    if (this.config.systemdCgroup) args.push('--systemd-cgroup');
    return args;
  }

  /** Runs a subcommand to completion. stdout/stderr are captured unless stdio says otherwise. */
  run(
    args: readonly string[],
    stdio?: [StdioSlot, StdioSlot, StdioSlot],
    input?: string,
  ): Promise<RunResult> {
    const slots: StdioSlot[] = stdio ?? [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
    return new Promise((resolve, reject) => {
      const child = this.reaper.spawn(this.config.binary, [...this.globalArgs(), ...args], { stdio: slots });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout?.on('data', (b: Buffer) => out.push(b));
      child.stderr?.on('data', (b: Buffer) => err.push(b));
      child.on('error', reject);
      child.on('close', (code, signal) =>
        resolve({
          code: code ?? 128 + (signal ? 9 : 0),
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(err).toString(),
        }),
      );
      if (child.stdin) {
        child.stdin.on('error', () => {});
        child.stdin.end(input);
      }
    });
  }

  /** Runs a subcommand and throws a RuntimeError naming `what` when it fails. */
  private async check(
    what: string,
    args: readonly string[],
    stdio?: [StdioSlot, StdioSlot, StdioSlot],
    input?: string,
  ): Promise<RunResult> {
    const offset = logSize(this.config.log);
    let result: RunResult;
    try {
      result = await this.run(args, stdio, input);
    } catch (err) {
      throw new RuntimeError(`${what}: ${this.config.binary}: ${(err as Error).message}`, { cause: err });
    }
    if (result.code !== 0) {
      const msg =
        lastLogError(this.config.log, offset) || result.stderr.trim() || `exit status ${result.code}`;
      throw new RuntimeError(`${what}: ${msg}`);
    }
    return result;
  }

  async create(id: string, bundle: string, opts: CreateOptions): Promise<void> {
    const args = ['create', '--bundle', bundle, '--pid-file', opts.pidFile];
    if (opts.consoleSocket) args.push('--console-socket', opts.consoleSocket);
    if (opts.noPivot) args.push('--no-pivot');
    if (opts.noNewKeyring) args.push('--no-new-keyring');
    await this.check('OCI runtime create failed', [...args, id], opts.stdio);
  }

  async start(id: string): Promise<void> {
    await this.check('OCI runtime start failed', ['start', id]);
  }

  async exec(id: string, processFile: string, opts: ExecOptions): Promise<void> {
    const args = ['exec', '--process', processFile, '--detach', '--pid-file', opts.pidFile];
    if (opts.consoleSocket) args.push('--console-socket', opts.consoleSocket);
    await this.check('OCI runtime exec failed', [...args, id], opts.stdio);
  }

  /** Signals the container's init (or every process with `all`). */
  async kill(id: string, signal: number, all = false): Promise<void> {
    const args = ['kill'];
    if (all) args.push('--all');
    try {
      await this.check('OCI runtime kill failed', [...args, id, String(signal)]);
    } catch (err) {
      throw killError(err as Error);
    }
  }

  /** Deletes the container; a container the runtime does not know is not an error. */
  async delete(id: string, force = false): Promise<void> {
    const args = ['delete'];
    if (force) args.push('--force');
    try {
      await this.check('OCI runtime delete failed', [...args, id]);
    } catch (err) {
      if (/does not exist|not found|no such/i.test((err as Error).message)) return;
      throw err;
    }
  }

  async pause(id: string): Promise<void> {
    await this.check('OCI runtime pause failed', ['pause', id]);
  }

  async resume(id: string): Promise<void> {
    await this.check('OCI runtime resume failed', ['resume', id]);
  }

  async ps(id: string): Promise<number[]> {
    const { stdout } = await this.check('OCI runtime ps failed', ['ps', '--format', 'json', id]);
    const pids = JSON.parse(stdout.trim() || '[]') as unknown;
    return Array.isArray(pids) ? pids.filter((p): p is number => typeof p === 'number') : [];
  }

  /** Applies an OCI LinuxResources document (JSON) to the running container. */
  async update(id: string, resourcesJson: string): Promise<void> {
    await this.check(
      'OCI runtime update failed',
      ['update', '--resources', '-', id],
      undefined,
      resourcesJson,
    );
  }
}

/** containerd's reading of kill failures: a finished process is NotFound. */
export function killError(err: Error): Error {
  const msg = err.message;
  if (/container not running|no such process|process already finished/i.test(msg)) {
    return new NotFoundError('process already finished', { cause: err });
  }
  if (/does not exist|not found/i.test(msg)) return new NotFoundError('no such container', { cause: err });
  return err;
}
