import type { AnyValue, Context, Mount } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { type Timestamp, toDate, unary } from './rpc';

/** containerd.v1.types.Status: where a task or exec process is in its life. */
export type ProcessStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING';

/** A task (the container's init process) or one of its exec processes, as the daemon reports it. */
export interface TaskProcess {
  /** The process's id: the container id for a task (its init process), the exec id for an exec. */
  id: string;
  /** containerd leaves it empty; berthd may fill it in. */
  containerId: string;
  pid: number;
  status: ProcessStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exitStatus: number;
  /** The Unix epoch while the process has not exited. */
  exitedAt: Date;
}

/** What a process left when it was waited for or deleted. */
export interface ExitResult {
  exitStatus: number;
  exitedAt: Date;
}

/** The answer of Delete and DeleteProcess. */
export interface DeletedProcess extends ExitResult {
  id: string;
  pid: number;
}

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

interface ProcessMessage {
  containerId: string;
  id: string;
  pid: number;
  status: ProcessStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exitStatus: number;
  exitedAt: Timestamp | null;
}

interface DeleteMessage {
  id: string;
  pid: number;
  exitStatus: number;
  exitedAt: Timestamp | null;
}

const anyOf = (v: AnyValue | null | undefined): AnyValue | undefined =>
  v ? { typeUrl: v.typeUrl ?? '', value: Buffer.from(v.value ?? []) } : undefined;

function processFromMessage(m: ProcessMessage): TaskProcess {
  return {
    id: m.id ?? '',
    containerId: m.containerId ?? '',
    pid: m.pid ?? 0,
    status: m.status ?? 'UNKNOWN',
    stdin: m.stdin ?? '',
    stdout: m.stdout ?? '',
    stderr: m.stderr ?? '',
    terminal: m.terminal ?? false,
    exitStatus: m.exitStatus ?? 0,
    exitedAt: toDate(m.exitedAt),
  };
}

const deletedFromMessage = (m: DeleteMessage): DeletedProcess => ({
  id: m.id ?? '',
  pid: m.pid ?? 0,
  exitStatus: m.exitStatus ?? 0,
  exitedAt: toDate(m.exitedAt),
});

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
    return deletedFromMessage(await this.call<DeleteMessage>(ctx, 'Delete', { containerId }));
  }

  /** Deletes a stopped exec process. */
  async deleteProcess(ctx: Context, containerId: string, execId: string): Promise<DeletedProcess> {
    return deletedFromMessage(await this.call<DeleteMessage>(ctx, 'DeleteProcess', { containerId, execId }));
  }

  /** The task (execId '') or an exec process. */
  async get(ctx: Context, containerId: string, execId = ''): Promise<TaskProcess> {
    const res = await this.call<{ process: ProcessMessage | null }>(ctx, 'Get', { containerId, execId });
    return processFromMessage(res.process ?? ({ containerId } as ProcessMessage));
  }

  /** Every task of the namespace. */
  async list(ctx: Context, filter = ''): Promise<TaskProcess[]> {
    const res = await this.call<{ tasks: ProcessMessage[] }>(ctx, 'List', { filter });
    return (res.tasks ?? []).map(processFromMessage);
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
    const res = await this.call<{ processes: { pid: number; info: AnyValue | null }[] }>(ctx, 'ListPids', {
      containerId,
    });
    return (res.processes ?? []).map((p) => {
      const info = anyOf(p.info);
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
    const res = await this.call<{
      metrics: { timestamp: Timestamp | null; id: string; data: AnyValue | null }[];
    }>(ctx, 'Metrics', { filters });
    return (res.metrics ?? []).map((m) => {
      const data = anyOf(m.data);
      const out: TaskMetric = {
        timestamp: toDate(m.timestamp),
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
    const res = await this.call<{ exitStatus: number; exitedAt: Timestamp | null }>(ctx, 'Wait', {
      containerId,
      execId,
    });
    return { exitStatus: res.exitStatus ?? 0, exitedAt: toDate(res.exitedAt) };
  }
}
