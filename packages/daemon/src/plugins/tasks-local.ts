import {
  type AnyValue,
  type Container,
  type ContainerStore,
  type Context,
  FailedPreconditionError,
  type Filter,
  InvalidArgumentError,
  isNotFound,
  NotImplementedError,
  parseFilters,
  preciseNow,
  requireNamespace,
  type TaskService,
  toTimestamp,
  validateIdentifier,
  type wire,
} from '@berth/api';
import { type Logger, nullLogger } from '../log';
import type { TaskManager } from '../runtime/manager';
import type { ShimTask } from '../runtime/shim';

/** The process a Tasks request names: the task's (execId '') or one of its execs. */
export type ProcessRef = Pick<wire.tasks.StartRequest, 'containerId' | 'execId'>;

/** How long Get and List wait for a shim's State before reporting the task UNKNOWN (containerd's). */
const STATE_TIMEOUT_MS = 2000;

const anyOrUndefined = (a: AnyValue | null | undefined): AnyValue | undefined => (a?.typeUrl ? a : undefined);

/**
 * containerd's tasks service: looks the container up, finds its task in the runtime and
 * calls the task's shim. Events are the shims' own (forwarded over ttrpc); this layer
 * publishes none, so nothing is announced twice.
 */
export class TasksLocal implements TaskService {
  constructor(
    private readonly runtime: TaskManager,
    private readonly containers: ContainerStore,
    private readonly log: Logger = nullLogger,
  ) {}

  private container(ctx: Context, id: string): Promise<Container> {
    requireNamespace(ctx);
    return this.containers.get(ctx, id);
  }

  private async task(ctx: Context, id: string): Promise<ShimTask> {
    await this.container(ctx, id);
    return this.runtime.get(ctx, id);
  }

  /** A task, checked to have the exec process when one is named (NotFound otherwise). */
  private async process(ctx: Context, ref: ProcessRef): Promise<ShimTask> {
    const task = await this.task(ctx, ref.containerId);
    if (ref.execId !== '') await task.state(ctx, ref.execId);
    return task;
  }

  async create(ctx: Context, req: wire.tasks.CreateTaskRequest): Promise<wire.tasks.CreateTaskResponse> {
    const container = await this.container(ctx, req.containerId);
    if (req.checkpoint?.digest)
      throw new NotImplementedError('restoring a task from a checkpoint is not supported');
    if (!container.spec) throw new FailedPreconditionError(`container ${container.id}: has no spec`);
    const { pid } = await this.runtime.create(ctx, container.id, {
      runtime: req.runtimePath || container.runtime.name,
      spec: container.spec,
      rootfs: req.rootfs ?? [],
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      terminal: req.terminal,
      options: anyOrUndefined(req.options) ?? anyOrUndefined(container.runtime.options),
    });
    return { containerId: container.id, pid };
  }

  async start(ctx: Context, req: wire.tasks.StartRequest): Promise<wire.tasks.StartResponse> {
    const task = await this.process(ctx, req);
    return { pid: await task.start(ctx, req.execId) };
  }

  async delete(ctx: Context, req: wire.tasks.DeleteTaskRequest): Promise<wire.tasks.DeleteResponse> {
    await this.container(ctx, req.containerId);
    const exit = await this.runtime.delete(ctx, req.containerId);
    return { id: '', pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: exit.exitedAt };
  }

  async deleteProcess(
    ctx: Context,
    req: wire.tasks.DeleteProcessRequest,
  ): Promise<wire.tasks.DeleteResponse> {
    if (req.execId === '') throw new InvalidArgumentError('exec id cannot be empty');
    const task = await this.process(ctx, req);
    const exit = await task.deleteProcess(ctx, req.execId);
    return { id: req.execId, pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: exit.exitedAt };
  }

  /** A process's state; a shim that does not answer in time gives UNKNOWN, as containerd. */
  private async processState(ctx: Context, task: ShimTask, execId: string): Promise<wire.taskTypes.Process> {
    const id = execId || task.id;
    try {
      const s = await task.state(ctx, execId, STATE_TIMEOUT_MS);
      return {
        containerId: '',
        id,
        pid: s.pid,
        status: s.status,
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
        terminal: s.terminal,
        exitStatus: s.exitStatus,
        exitedAt: s.exitedAt,
      };
    } catch (err) {
      if (isNotFound(err)) throw err;
      this.log.with({ id, error: (err as Error).message }).error('get state failed');
      return {
        containerId: '',
        id,
        pid: 0,
        status: 'UNKNOWN',
        stdin: '',
        stdout: '',
        stderr: '',
        terminal: false,
        exitStatus: 0,
        exitedAt: undefined,
      };
    }
  }

  async get(ctx: Context, req: wire.tasks.GetRequest): Promise<wire.tasks.GetResponse> {
    const task = await this.task(ctx, req.containerId);
    return { process: await this.processState(ctx, task, req.execId) };
  }

  async list(ctx: Context): Promise<wire.tasks.ListTasksResponse> {
    const tasks = this.runtime.list(ctx);
    const states = await Promise.all(
      tasks.map((t) =>
        this.processState(ctx, t, '').catch((err) => {
          if (isNotFound(err)) return undefined; // deleted meanwhile
          throw err;
        }),
      ),
    );
    return { tasks: states.filter((s): s is wire.taskTypes.Process => s !== undefined) };
  }

  async kill(ctx: Context, req: wire.tasks.KillRequest): Promise<void> {
    const task = await this.process(ctx, req);
    await task.kill(ctx, req.execId, req.signal, req.all);
  }

  async exec(ctx: Context, req: wire.tasks.ExecProcessRequest): Promise<void> {
    if (req.execId === '') throw new InvalidArgumentError('exec id cannot be empty');
    try {
      validateIdentifier(req.execId);
    } catch (err) {
      throw new InvalidArgumentError(`invalid exec id ${req.execId}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const task = await this.task(ctx, req.containerId);
    await task.exec(
      ctx,
      req.execId,
      { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      anyOrUndefined(req.spec),
    );
  }

  async resizePty(ctx: Context, req: wire.tasks.ResizePtyRequest): Promise<void> {
    const task = await this.process(ctx, req);
    await task.resizePty(ctx, req.execId, req.width, req.height);
  }

  async closeIO(ctx: Context, req: wire.tasks.CloseIORequest): Promise<void> {
    const task = await this.process(ctx, req);
    if (req.stdin) await task.closeIO(ctx, req.execId);
  }

  async pause(ctx: Context, req: wire.tasks.PauseTaskRequest): Promise<void> {
    await (await this.task(ctx, req.containerId)).pause(ctx);
  }

  async resume(ctx: Context, req: wire.tasks.ResumeTaskRequest): Promise<void> {
    await (await this.task(ctx, req.containerId)).resume(ctx);
  }

  async listPids(ctx: Context, req: wire.tasks.ListPidsRequest): Promise<wire.tasks.ListPidsResponse> {
    const task = await this.task(ctx, req.containerId);
    return { processes: await task.pids(ctx) };
  }

  async checkpoint(ctx: Context, req: wire.tasks.CheckpointTaskRequest): Promise<never> {
    await this.task(ctx, req.containerId);
    throw new NotImplementedError(`checkpoint of task ${req.containerId}: not supported by berth`);
  }

  async update(ctx: Context, req: wire.tasks.UpdateTaskRequest): Promise<void> {
    const task = await this.task(ctx, req.containerId);
    await task.update(ctx, anyOrUndefined(req.resources), req.annotations ?? {});
  }

  async metrics(ctx: Context, req: wire.tasks.MetricsRequest): Promise<wire.tasks.MetricsResponse> {
    let filter: Filter;
    try {
      filter = parseFilters(req.filters ?? []);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message, { cause: err });
    }
    const tasks = this.runtime.list(ctx).filter((t) =>
      filter.match((path) => {
        if (path[0] === 'id') return t.id;
        if (path[0] === 'namespace') return t.namespace;
        return undefined;
      }),
    );
    const metrics = await Promise.all(
      tasks.map(async (t) => {
        const collected = preciseNow();
        try {
          const data = await t.stats(ctx);
          return { timestamp: toTimestamp(collected), id: t.id, data };
        } catch (err) {
          if (!isNotFound(err)) {
            this.log.with({ id: t.id, error: (err as Error).message }).error('collecting metrics failed');
          }
          return undefined;
        }
      }),
    );
    return { metrics: metrics.filter((m) => m !== undefined) };
  }

  async wait(ctx: Context, req: wire.tasks.WaitRequest): Promise<wire.tasks.WaitResponse> {
    const task = await this.process(ctx, req);
    return task.wait(ctx, req.execId);
  }
}
