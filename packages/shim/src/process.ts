/**
 * The processes of a container: its init (created and started by the OCI runtime) and
 * the processes added with Exec. Each keeps its status, pid, exit and stdio; the rules of
 * which operation is allowed in which status are containerd's.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FailedPreconditionError, NotFoundError } from '@berth/api';
import { unmountAll } from '@berth/sys';
import type { Logger } from './log';
import type { Exit, Reaper } from './reaper';
import type { Runc } from './runc';
import { ConsoleIO, ConsoleSocket, PipeIO, type StdioPaths } from './stdio';
import type { Timestamp } from './time';

export type ProcessStatus = 'created' | 'running' | 'paused' | 'pausing' | 'stopped' | 'deleted';

/** How long Delete waits for the last output to reach the client (containerd: 2s). */
const IO_DRAIN_MS = 2000;

export interface ProcessDeps {
  runc: Runc;
  reaper: Reaper;
  log: Logger;
  ioOwner?: { uid: number; gid: number };
}

function readPidFile(path: string): number {
  const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`pid file ${path}: no pid in it`);
  return pid;
}

export abstract class Process {
  pid = 0;
  status: ProcessStatus = 'created';
  exitStatus = 0;
  exitedAt: Timestamp | null = null;
  io: PipeIO | ConsoleIO | undefined;
  /** True while create/start runs: an exit seen meanwhile waits in pendingExit. */
  starting = false;
  pendingExit: Exit | undefined;
  readonly exited: Promise<void>;
  private markExited!: () => void;

  constructor(
    readonly id: string,
    readonly stdio: StdioPaths,
    protected readonly deps: ProcessDeps,
  ) {
    this.exited = new Promise((resolve) => {
      this.markExited = resolve;
    });
  }

  get hasExited(): boolean {
    return this.exitedAt !== null;
  }

  /** Records the exit; false when it was already recorded. */
  setExited(exit: Pick<Exit, 'status' | 'at'>): boolean {
    if (this.exitedAt !== null) return false;
    this.exitStatus = exit.status;
    this.exitedAt = exit.at;
    if (this.status !== 'deleted') this.status = 'stopped';
    this.markExited();
    return true;
  }

  resize(width: number, height: number): void {
    if (this.status === 'deleted') throw new FailedPreconditionError('cannot resize a deleted process');
    if (this.io instanceof ConsoleIO) this.io.resize(width, height);
  }

  closeStdin(): void {
    this.io?.closeStdin();
  }

  /**
   * Sets up stdio, runs the runtime command `launch` (which writes `pidFile`), then learns
   * the pid and starts copying. The exit of the new process goes to `onExit`, even if it
   * came before the pid was known.
   */
  protected async launch(
    pidFile: string,
    runtime: (consoleSocket: string | undefined, stdio: PipeIO | undefined) => Promise<void>,
    onExit: (exit: Exit) => void,
    undo: () => Promise<void>,
  ): Promise<void> {
    const { log, reaper, ioOwner } = this.deps;
    const console = this.stdio.terminal ? new ConsoleSocket() : undefined;
    let pipes: PipeIO | undefined;
    const endClaim = reaper.beginClaim();
    let launched = false;
    try {
      pipes = this.stdio.terminal ? undefined : new PipeIO(this.stdio, log, ioOwner);
      await runtime(console?.path, pipes);
      launched = true;
      pipes?.closeAfterStart();
      this.pid = readPidFile(pidFile);
      this.io = console ? new ConsoleIO(this.stdio, log, await console.receive()) : pipes;
      this.io!.start();
      reaper.watch(this.pid, onExit);
    } catch (err) {
      this.io?.close();
      pipes?.close();
      this.io = undefined;
      if (launched) await undo().catch((e) => log.warn('undo after a failed launch', { error: e }));
      throw err;
    } finally {
      endClaim();
      console?.close();
    }
  }
}

export interface InitOptions {
  bundle: string;
  /** <bundle>/rootfs when the daemon sent rootfs mounts (unmounted on delete), else ''. */
  rootfs: string;
  noPivotRoot: boolean;
  noNewKeyring: boolean;
}

export class InitProcess extends Process {
  constructor(
    id: string,
    stdio: StdioPaths,
    deps: ProcessDeps,
    readonly options: InitOptions,
  ) {
    super(id, stdio, deps);
  }

  get pidFile(): string {
    return join(this.options.bundle, 'init.pid');
  }

  async create(onExit: (exit: Exit) => void): Promise<void> {
    const { runc } = this.deps;
    await this.launch(
      this.pidFile,
      (consoleSocket, pipes) =>
        runc.create(this.id, this.options.bundle, {
          pidFile: this.pidFile,
          consoleSocket,
          stdio: pipes?.runtimeStdio ?? ['ignore', 'ignore', 'ignore'],
          noPivot: this.options.noPivotRoot,
          noNewKeyring: this.options.noNewKeyring,
        }),
      onExit,
      () => runc.delete(this.id, true),
    );
  }

  async start(): Promise<void> {
    if (this.status !== 'created') throw new FailedPreconditionError(`cannot start a ${this.status} process`);
    await this.deps.runc.start(this.id);
    if (this.status === 'created') this.status = 'running';
  }

  async kill(signal: number, all: boolean): Promise<void> {
    if (this.status === 'deleted') throw new NotFoundError('cannot kill a deleted process');
    await this.deps.runc.kill(this.id, signal, all);
  }

  async pause(): Promise<void> {
    if (this.status !== 'running')
      throw new FailedPreconditionError(`cannot pause a ${this.status} container`);
    this.status = 'pausing';
    try {
      await this.deps.runc.pause(this.id);
      if (this.status === 'pausing') this.status = 'paused';
    } catch (err) {
      if (this.status === 'pausing') this.status = 'running';
      throw err;
    }
  }

  async resume(): Promise<void> {
    if (this.status !== 'paused')
      throw new FailedPreconditionError(`cannot resume a ${this.status} container`);
    await this.deps.runc.resume(this.id);
    if (this.status === 'paused') this.status = 'running';
  }

  async update(resourcesJson: string): Promise<void> {
    if (this.status === 'stopped' || this.status === 'deleted') {
      throw new FailedPreconditionError(`cannot update a ${this.status} container`);
    }
    await this.deps.runc.update(this.id, resourcesJson);
  }

  /** Deletes a created or stopped container: drains output, asks the runtime, unmounts the rootfs. */
  async delete(): Promise<void> {
    if (this.status === 'deleted') throw new NotFoundError('cannot delete a deleted process');
    if (this.status !== 'created' && this.status !== 'stopped') {
      throw new FailedPreconditionError(`cannot delete a ${this.status} process`);
    }
    await this.io?.wait(IO_DRAIN_MS);
    let failure: unknown;
    try {
      await this.deps.runc.delete(this.id);
    } catch (err) {
      failure = err;
    }
    this.io?.close();
    if (this.options.rootfs !== '') {
      try {
        await unmountAll(this.options.rootfs);
      } catch (err) {
        this.deps.log.warn('failed to cleanup rootfs mount', { error: err });
        failure ??= new Error(`failed rootfs umount: ${(err as Error).message}`, { cause: err });
      }
    }
    this.status = 'deleted';
    if (failure !== undefined) throw failure;
  }
}

export class ExecProcess extends Process {
  constructor(
    id: string,
    stdio: StdioPaths,
    deps: ProcessDeps,
    private readonly init: InitProcess,
    /** The OCI process spec, terminal already set from the request. */
    private readonly spec: Record<string, unknown>,
  ) {
    super(id, stdio, deps);
  }

  private get pidFile(): string {
    return join(this.init.options.bundle, `${this.id}.pid`);
  }

  /** An exec's status follows its container while the container is paused. */
  get reportedStatus(): ProcessStatus {
    const parent = this.init.status;
    return parent === 'paused' || parent === 'pausing' ? parent : this.status;
  }

  async start(onExit: (exit: Exit) => void): Promise<void> {
    if (this.status !== 'created') throw new FailedPreconditionError(`cannot start a ${this.status} process`);
    const specFile = join(this.init.options.bundle, `.${this.id}.process.json`);
    writeFileSync(specFile, JSON.stringify(this.spec), { mode: 0o600 });
    const { runc } = this.deps;
    try {
      await this.launch(
        this.pidFile,
        (consoleSocket, pipes) =>
          runc.exec(this.init.id, specFile, {
            pidFile: this.pidFile,
            consoleSocket,
            stdio: pipes?.runtimeStdio ?? ['ignore', 'ignore', 'ignore'],
          }),
        onExit,
        async () => {
          if (this.pid > 0) process.kill(this.pid, 'SIGKILL');
        },
      );
      this.status = 'running';
    } finally {
      rmSync(specFile, { force: true });
    }
  }

  async kill(signal: number): Promise<void> {
    if (this.status === 'deleted') throw new NotFoundError('cannot kill a deleted process');
    if (this.pid === 0) throw new FailedPreconditionError('process not created');
    if (this.hasExited) throw new NotFoundError('process already finished');
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH')
        throw new NotFoundError('process already finished');
      throw err;
    }
  }

  async delete(): Promise<void> {
    if (this.status === 'deleted') throw new NotFoundError('cannot delete a deleted process');
    if (this.status === 'running' && !this.hasExited) {
      throw new FailedPreconditionError('cannot delete a running process');
    }
    await this.io?.wait(IO_DRAIN_MS);
    this.io?.close();
    rmSync(this.pidFile, { force: true });
    this.status = 'deleted';
  }
}
