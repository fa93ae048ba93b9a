import {
  type AnyValue,
  anyFromWire,
  type Context,
  FailedPreconditionError,
  isNotFound,
  isUnavailable,
  type Mount,
  NotFoundError,
  toTimestamp,
  UnavailableError,
  type wire,
} from '@berth/api';
import type { CallOptions, TtrpcClient } from '@berth/ttrpc';
import type { Bundle } from './bundle';
import type { Exit, ShimCommandConfig } from './shim-binary';
import type { ShimLog } from './shim-log';

export const TASK_SERVICE = 'containerd.task.v2.Task';
/** berth's shim serves this beside the task API (@berth/api proto/berth/shim/v1/log.proto). */
export const LOG_SERVICE = 'berth.shim.v1.Log';

export type TaskStatus = wire.taskTypes.Status;

/** A process as the shim's State reports it. */
export type ProcessState = wire.shim.StateResponse;

export type ProcessExit = wire.shim.WaitResponse;

export type DeleteResult = wire.shim.DeleteResponse;

/** The stdio of a process: fifo paths (or other URIs the shim understands) and a terminal. */
export interface ProcessIO {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export interface CreateTaskOptions extends ProcessIO {
  rootfs: Mount[];
  /** Runtime options (the container's, or the task's when Create carries them). */
  options?: AnyValue;
}

/**
 * The life of a task as berthd sees it: `live` while its shim answers; `deleting` while
 * berthd takes it down (the connection closing then is expected); `dead` once its shim
 * went away on its own: the task then reads as STOPPED with the exit berthd could learn,
 * until it is deleted.
 */
export type TaskPhase = 'live' | 'deleting' | 'dead';

/**
 * One task and the shim serving it: a ttrpc connection to containerd.task.v2.Task on the
 * shim's socket. Methods take an exec id ('' for the task's init process).
 */
export class ShimTask {
  phase: TaskPhase = 'live';
  /** The init process's exit, once known (from the shim's /tasks/exit or its cleanup). */
  exit: Exit | undefined;
  /** Why the task is dead (phase 'dead'). */
  deathReason: string | undefined;
  /** Settles once berthd cleaned up after the dead shim: what a dead task reports waits for it. */
  cleanedUp: Promise<void> = Promise.resolve();
  /**
   * Called when the shim, asked for the init process of a task berthd holds as live, says
   * it has no such task: the shim finished a delete whose caller berthd lost in a crash.
   */
  onVanished: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly namespace: string,
    readonly bundle: Bundle,
    readonly shim: ShimCommandConfig,
    readonly address: string,
    readonly client: TtrpcClient,
    readonly log: ShimLog | undefined,
  ) {}

  private opts(ctx: Context | undefined, timeoutMs?: number): CallOptions {
    return { namespace: this.namespace, signal: ctx?.signal, timeoutMs };
  }

  /** Calls a method of the shim's task service; a lost connection names the task. */
  private async call<T>(
    method: string,
    request: object,
    ctx?: Context,
    timeoutMs?: number,
    service = TASK_SERVICE,
  ): Promise<T> {
    if (this.phase === 'dead') throw this.deadError();
    try {
      return (await this.client.call(service, method, request, this.opts(ctx, timeoutMs))) as T;
    } catch (err) {
      if (isUnavailable(err) && this.client.closed) {
        throw new UnavailableError(`task ${this.id}: shim disconnected: ${(err as Error).message}`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  private deadError(): FailedPreconditionError {
    return new FailedPreconditionError(
      `task ${this.id} is stopped: ${this.deathReason ?? 'its shim exited'}`,
    );
  }

  async create(ctx: Context, opts: CreateTaskOptions): Promise<number> {
    const res = await this.call<{ pid: number }>(
      'Create',
      {
        id: this.id,
        bundle: this.bundle.path,
        rootfs: opts.rootfs.map((m) => ({
          type: m.type,
          source: m.source,
          target: m.target ?? '',
          options: m.options,
        })),
        terminal: opts.terminal,
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
        checkpoint: '',
        parentCheckpoint: '',
        options: opts.options?.typeUrl ? opts.options : null,
      },
      ctx,
    );
    return res.pid;
  }

  /**
   * berth's shim only (berth.shim.v1.Log): the CRI log it writes for the task (stdio URI
   * cri-log://) is opened again at its path, after the kubelet renamed it.
   */
  async reopenLog(ctx: Context): Promise<void> {
    await this.call('Reopen', { id: this.id }, ctx, undefined, LOG_SERVICE);
  }

  /** The shim's pid and the task's (Connect); also how berthd checks a shim is alive. */
  connect(ctx?: Context, timeoutMs?: number): Promise<{ shimPid: number; taskPid: number; version: string }> {
    return this.call('Connect', { id: this.id }, ctx, timeoutMs);
  }

  async state(ctx: Context | undefined, execId = '', timeoutMs?: number): Promise<ProcessState> {
    if (this.phase === 'dead') {
      await this.cleanedUp;
      if (execId !== '')
        throw new NotFoundError(`process ${execId} does not exist: task ${this.id} is stopped`);
      return {
        id: this.id,
        bundle: this.bundle.path,
        pid: this.exit?.pid ?? 0,
        status: 'STOPPED',
        stdin: '',
        stdout: '',
        stderr: '',
        terminal: false,
        exitStatus: this.exit?.exitStatus ?? 255,
        exitedAt: this.exit ? toTimestamp(this.exit.exitedAt) : undefined,
        execId: '',
      };
    }
    try {
      return await this.call<ProcessState>('State', { id: this.id, execId }, ctx, timeoutMs);
    } catch (err) {
      if (execId === '' && this.phase === 'live' && isNotFound(err)) this.onVanished?.();
      throw err;
    }
  }

  async start(ctx: Context, execId = ''): Promise<number> {
    const res = await this.call<{ pid: number }>('Start', { id: this.id, execId }, ctx);
    return res.pid;
  }

  async kill(ctx: Context, execId: string, signal: number, all: boolean): Promise<void> {
    if (this.phase === 'dead')
      throw new NotFoundError(`process already finished: task ${this.id} is stopped`);
    await this.call('Kill', { id: this.id, execId, signal, all }, ctx);
  }

  async wait(ctx: Context, execId = ''): Promise<ProcessExit> {
    if (this.phase === 'dead' && execId === '') {
      await this.cleanedUp;
      return {
        exitStatus: this.exit?.exitStatus ?? 255,
        exitedAt: this.exit ? toTimestamp(this.exit.exitedAt) : undefined,
      };
    }
    const res = await this.call<ProcessExit>('Wait', { id: this.id, execId }, ctx);
    return { exitStatus: res.exitStatus, exitedAt: res.exitedAt };
  }

  /** Deletes a process in the shim (the init process: the container). */
  async deleteProcess(ctx: Context, execId = ''): Promise<DeleteResult> {
    const res = await this.call<DeleteResult>('Delete', { id: this.id, execId }, ctx);
    return { pid: res.pid, exitStatus: res.exitStatus, exitedAt: res.exitedAt };
  }

  async exec(ctx: Context, execId: string, io: ProcessIO, spec: AnyValue | undefined): Promise<void> {
    await this.call(
      'Exec',
      {
        id: this.id,
        execId,
        terminal: io.terminal,
        stdin: io.stdin,
        stdout: io.stdout,
        stderr: io.stderr,
        spec: spec?.typeUrl ? spec : null,
      },
      ctx,
    );
  }

  async pids(ctx: Context): Promise<wire.taskTypes.ProcessInfo[]> {
    if (this.phase === 'dead') return [];
    const res = await this.call<wire.shim.PidsResponse>('Pids', { id: this.id }, ctx);
    return res.processes.map((p) => ({ pid: p.pid, info: anyFromWire(p.info) }));
  }

  async pause(ctx: Context): Promise<void> {
    await this.call('Pause', { id: this.id }, ctx);
  }

  async resume(ctx: Context): Promise<void> {
    await this.call('Resume', { id: this.id }, ctx);
  }

  async resizePty(ctx: Context, execId: string, width: number, height: number): Promise<void> {
    await this.call('ResizePty', { id: this.id, execId, width, height }, ctx);
  }

  async closeIO(ctx: Context, execId: string): Promise<void> {
    await this.call('CloseIO', { id: this.id, execId, stdin: true }, ctx);
  }

  async update(
    ctx: Context,
    resources: AnyValue | undefined,
    annotations: Record<string, string>,
  ): Promise<void> {
    await this.call(
      'Update',
      { id: this.id, resources: resources?.typeUrl ? resources : null, annotations },
      ctx,
    );
  }

  async stats(ctx: Context): Promise<AnyValue | undefined> {
    if (this.phase === 'dead') throw new NotFoundError(`task ${this.id} is stopped`);
    const res = await this.call<wire.shim.StatsResponse>('Stats', { id: this.id }, ctx);
    return anyFromWire(res.stats);
  }

  /** Asks the shim to exit once it serves no task; "ttrpc: closed" is the expected answer. */
  async shutdown(timeoutMs: number): Promise<void> {
    try {
      await this.client.call(
        TASK_SERVICE,
        'Shutdown',
        { id: this.id, now: false },
        { ...this.opts(undefined), timeoutMs },
      );
    } catch (err) {
      if (!(isUnavailable(err) && this.client.closed)) throw err;
    }
  }

  /** Closes berthd's connection and log reader; the shim keeps running. */
  async disconnect(): Promise<void> {
    this.log?.close();
    await this.client.close();
  }
}
