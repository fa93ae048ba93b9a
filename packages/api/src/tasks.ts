import type { Context } from './context';
import type * as wire from './gen';

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

/**
 * The task service as the daemon holds it in-process (containerd.services.tasks.v1.Tasks,
 * request and response messages as generated): what a plugin such as the CRI uses to run
 * containers without going through a socket. Only the calls such plugins need are listed.
 */
export interface TaskService {
  create(ctx: Context, req: wire.tasks.CreateTaskRequest): Promise<wire.tasks.CreateTaskResponse>;
  start(ctx: Context, req: wire.tasks.StartRequest): Promise<wire.tasks.StartResponse>;
  delete(ctx: Context, req: wire.tasks.DeleteTaskRequest): Promise<wire.tasks.DeleteResponse>;
  deleteProcess(ctx: Context, req: wire.tasks.DeleteProcessRequest): Promise<wire.tasks.DeleteResponse>;
  get(ctx: Context, req: wire.tasks.GetRequest): Promise<wire.tasks.GetResponse>;
  kill(ctx: Context, req: wire.tasks.KillRequest): Promise<void>;
  exec(ctx: Context, req: wire.tasks.ExecProcessRequest): Promise<void>;
  resizePty(ctx: Context, req: wire.tasks.ResizePtyRequest): Promise<void>;
  closeIO(ctx: Context, req: wire.tasks.CloseIORequest): Promise<void>;
  listPids(ctx: Context, req: wire.tasks.ListPidsRequest): Promise<wire.tasks.ListPidsResponse>;
  update(ctx: Context, req: wire.tasks.UpdateTaskRequest): Promise<void>;
  metrics(ctx: Context, req: wire.tasks.MetricsRequest): Promise<wire.tasks.MetricsResponse>;
  wait(ctx: Context, req: wire.tasks.WaitRequest): Promise<wire.tasks.WaitResponse>;
}
