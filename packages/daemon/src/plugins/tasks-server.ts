import { type Context, grpcService, type wire } from '@berth/api';
import type { Logger } from '../log';
import type { GrpcService, ServiceRegistrar } from '../server/grpc-server';
import { unary } from '../server/handlers';
import type { TasksLocal } from './tasks-local';

export const TASKS_SERVICE = 'containerd.services.tasks.v1.Tasks';

/** containerd.services.tasks.v1.Tasks over gRPC. */
export class TasksServer implements GrpcService {
  constructor(
    private readonly tasks: TasksLocal,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const t = this.tasks;
    const opts = (method: string) => ({ log: this.log, method: `Tasks/${method}` });
    const empty =
      <Req>(fn: (ctx: Context, req: Req) => Promise<void>) =>
      async (ctx: Context, req: Req): Promise<wire.protobuf.Empty> => {
        await fn(ctx, req);
        return {};
      };
    server.addService(grpcService(TASKS_SERVICE), {
      Create: unary((ctx, req: wire.tasks.CreateTaskRequest) => t.create(ctx, req), opts('Create')),
      Start: unary((ctx, req: wire.tasks.StartRequest) => t.start(ctx, req), opts('Start')),
      Delete: unary((ctx, req: wire.tasks.DeleteTaskRequest) => t.delete(ctx, req), opts('Delete')),
      DeleteProcess: unary(
        (ctx, req: wire.tasks.DeleteProcessRequest) => t.deleteProcess(ctx, req),
        opts('DeleteProcess'),
      ),
      Get: unary((ctx, req: wire.tasks.GetRequest) => t.get(ctx, req), opts('Get')),
      List: unary((ctx) => t.list(ctx), opts('List')),
      Kill: unary(
        empty((ctx, req: wire.tasks.KillRequest) => t.kill(ctx, req)),
        opts('Kill'),
      ),
      Exec: unary(
        empty((ctx, req: wire.tasks.ExecProcessRequest) => t.exec(ctx, req)),
        opts('Exec'),
      ),
      ResizePty: unary(
        empty((ctx, req: wire.tasks.ResizePtyRequest) => t.resizePty(ctx, req)),
        opts('ResizePty'),
      ),
      CloseIO: unary(
        empty((ctx, req: wire.tasks.CloseIORequest) => t.closeIO(ctx, req)),
        opts('CloseIO'),
      ),
      Pause: unary(
        empty((ctx, req: wire.tasks.PauseTaskRequest) => t.pause(ctx, req)),
        opts('Pause'),
      ),
      Resume: unary(
        empty((ctx, req: wire.tasks.ResumeTaskRequest) => t.resume(ctx, req)),
        opts('Resume'),
      ),
      ListPids: unary((ctx, req: wire.tasks.ListPidsRequest) => t.listPids(ctx, req), opts('ListPids')),
      Checkpoint: unary(
        (ctx, req: wire.tasks.CheckpointTaskRequest) => t.checkpoint(ctx, req),
        opts('Checkpoint'),
      ),
      Update: unary(
        empty((ctx, req: wire.tasks.UpdateTaskRequest) => t.update(ctx, req)),
        opts('Update'),
      ),
      Metrics: unary((ctx, req: wire.tasks.MetricsRequest) => t.metrics(ctx, req), opts('Metrics')),
      Wait: unary((ctx, req: wire.tasks.WaitRequest) => t.wait(ctx, req), opts('Wait')),
    });
  }
}
