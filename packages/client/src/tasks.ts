import {
  type AnyValue,
  anyFromWire,
  type Context,
  type DeletedProcess,
  deletedProcessFromWire,
  type ExitResult,
  fromTimestamp,
  type Mount,
  type ProcessStatus,
  processFromWire,
  type TaskProcess,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { unary } from './rpc';

export type { DeletedProcess, ExitResult, ProcessStatus, TaskProcess };

/** Where a process's standard streams go: FIFO paths (or log URIs) the shim opens. */
export interface ProcessIoConfig {
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
}

export interface CreateTaskRequest extends ProcessIoConfig {
  containerId: string;
  /** The mounts of the container's root filesystem (its snapshot's mounts). */
  rootfs?: Mount[];
  /** Runtime-specific task options (e.g. runc's), as an Any. */
  options?: AnyValue;
  runtimePath?: string;
}

export interface ExecRequest extends ProcessIoConfig {
  containerId: string;
  execId: string;
  /** The OCI process spec as an Any (see oci.processToAny). */
  spec: AnyValue;
}

export interface KillOptions {
  execId?: string;
  /** Signal every process of the container, not only its init (or the exec) process. */
  all?: boolean;
}

export interface ProcessInfo {
  pid: number;
  /** Runtime-specific details (runc's shim: containerd.runc.v1.ProcessDetails with the exec id). */
  info?: AnyValue;
}

export interface TaskMetric {
  timestamp: Date;
  /** The nanoseconds of the timestamp (a Date keeps milliseconds only). */
  timestampNanos: number;
  id: string;
  data?: AnyValue;
}

const ioFields = (io: ProcessIoConfig) => ({
  stdin: io.stdin ?? '',
  stdout: io.stdout ?? '',
  stderr: io.stderr ?? '',
  terminal: io.terminal ?? false,
});

/**
 * containerd.services.tasks.v1.Tasks: the running side of containers (create a task from a
 * container record, start, signal, exec, wait, delete), as containerd's client calls it.
 * Errors are the typed errors of @berth/api (a container without a task: ERR_NOT_FOUND).
 */
export class RemoteTasks {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  private call<Res>(ctx: Context, method: string, request: object): Promise<Res> {
    return unary<Res>(this.client, method, request, ctx, this.target);
  }

  /** Creates the task of a container (its init process, not yet started); resolves its pid. */
  async create(ctx: Context, req: CreateTaskRequest): Promise<{ containerId: string; pid: number }> {
    const res = await this.call<{ containerId: string; pid: number }>(ctx, 'Create', {
      containerId: req.containerId,
      rootfs: (req.rootfs ?? []).map((m) => ({
        type: m.type,
        source: m.source,
        target: m.target ?? '',
        options: m.options,
      })),
      ...ioFields(req),
      options: req.options ?? null,
      runtimePath: req.runtimePath ?? '',
    });
    return { containerId: res.containerId || req.containerId, pid: res.pid ?? 0 };
  }

  /** Starts the task (execId '') or one of its exec processes; resolves the pid. */
  async start(ctx: Context, containerId: string, execId = ''): Promise<number> {
    const res = await this.call<{ pid: number }>(ctx, 'Start', { containerId, execId });
    return res.pid ?? 0;
  }

  /** Deletes a stopped (or created) task and reports how its init process ended. */
  async delete(ctx: Context, containerId: string): Promise<DeletedProcess> {
    return deletedProcessFromWire(await this.call<wire.tasks.DeleteResponse>(ctx, 'Delete', { containerId }));
  }

  /** Deletes a stopped exec process. */
  async deleteProcess(ctx: Context, containerId: string, execId: string): Promise<DeletedProcess> {
    return deletedProcessFromWire(
      await this.call<wire.tasks.DeleteResponse>(ctx, 'DeleteProcess', { containerId, execId }),
    );
  }

  /** The task (execId '') or an exec process. */
  async get(ctx: Context, containerId: string, execId = ''): Promise<TaskProcess> {
    const res = await this.call<wire.tasks.GetResponse>(ctx, 'Get', { containerId, execId });
    return processFromWire(res.process ?? { containerId });
  }

  /** Every task of the namespace. */
  async list(ctx: Context, filter = ''): Promise<TaskProcess[]> {
    const res = await this.call<wire.tasks.ListTasksResponse>(ctx, 'List', { filter });
    return (res.tasks ?? []).map(processFromWire);
  }

  async kill(ctx: Context, containerId: string, signal: number, opts: KillOptions = {}): Promise<void> {
    await this.call(ctx, 'Kill', { containerId, execId: opts.execId ?? '', signal, all: opts.all ?? false });
  }

  /** Adds an exec process to a running task (started with start(ctx, id, execId)). */
  async exec(ctx: Context, req: ExecRequest): Promise<void> {
    await this.call(ctx, 'Exec', {
      containerId: req.containerId,
      execId: req.execId,
      ...ioFields(req),
      spec: req.spec,
    });
  }

  async resizePty(ctx: Context, containerId: string, execId: string, width: number, height: number) {
    await this.call(ctx, 'ResizePty', { containerId, execId, width, height });
  }

  /** Closes the process's stdin (what a client does once its own input ended). */
  async closeIO(ctx: Context, containerId: string, execId = ''): Promise<void> {
    await this.call(ctx, 'CloseIO', { containerId, execId, stdin: true });
  }

  async pause(ctx: Context, containerId: string): Promise<void> {
    await this.call(ctx, 'Pause', { containerId });
  }

  async resume(ctx: Context, containerId: string): Promise<void> {
    await this.call(ctx, 'Resume', { containerId });
  }

  /** The processes in the task's container. */
  async listPids(ctx: Context, containerId: string): Promise<ProcessInfo[]> {
    const res = await this.call<wire.tasks.ListPidsResponse>(ctx, 'ListPids', {
      containerId,
    });
    return (res.processes ?? []).map((p) => {
      const info = anyFromWire(p.info);
      return info ? { pid: p.pid, info } : { pid: p.pid };
    });
  }

  /** Updates the task's resources (an Any of the runtime's resources type) and annotations. */
  async update(
    ctx: Context,
    containerId: string,
    update: { resources?: AnyValue; annotations?: Record<string, string> },
  ): Promise<void> {
    await this.call(ctx, 'Update', {
      containerId,
      resources: update.resources ?? null,
      annotations: update.annotations ?? {},
    });
  }

  /** Metrics of the tasks matching filters (`id==<container>`). */
  async metrics(ctx: Context, filters: string[] = []): Promise<TaskMetric[]> {
    const res = await this.call<wire.tasks.MetricsResponse>(ctx, 'Metrics', { filters });
    return (res.metrics ?? []).map((m) => {
      const data = anyFromWire(m.data);
      const out: TaskMetric = {
        timestamp: fromTimestamp(m.timestamp),
        timestampNanos: Number(m.timestamp?.nanos ?? 0),
        id: m.id ?? '',
      };
      if (data) out.data = data;
      return out;
    });
  }

  /**
   * Resolves when the task (or exec process) has exited, with its exit status (128 + signal
   * for a process killed by a signal, as the shims report it). Cancel with ctx.signal.
   */
  async wait(ctx: Context, containerId: string, execId = ''): Promise<ExitResult> {
    const res = await this.call<wire.tasks.WaitResponse>(ctx, 'Wait', {
      containerId,
      execId,
    });
    return { exitStatus: res.exitStatus ?? 0, exitedAt: fromTimestamp(res.exitedAt) };
  }
}
