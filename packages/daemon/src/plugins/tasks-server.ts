import { type Context, grpcService } from '@berth/api';
import type { Logger } from '../log';
import { EMPTY } from '../server/convert';
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
      async (ctx: Context, req: Req): Promise<typeof EMPTY> => {
        await fn(ctx, req);
        return EMPTY;
      };
    server.addService(grpcService(TASKS_SERVICE), {
      Create: unary((ctx, req: any) => t.create(ctx, req), opts('Create')),
      Start: unary((ctx, req: any) => t.start(ctx, req), opts('Start')),
      Delete: unary((ctx, req: any) => t.delete(ctx, req), opts('Delete')),
      DeleteProcess: unary((ctx, req: any) => t.deleteProcess(ctx, req), opts('DeleteProcess')),
      Get: unary((ctx, req: any) => t.get(ctx, req), opts('Get')),
      List: unary((ctx) => t.list(ctx), opts('List')),
      Kill: unary(
        empty((ctx, req: any) => t.kill(ctx, req)),
        opts('Kill'),
      ),
      Exec: unary(
        empty((ctx, req: any) => t.exec(ctx, req)),
        opts('Exec'),
      ),
      ResizePty: unary(
        empty((ctx, req: any) => t.resizePty(ctx, req)),
        opts('ResizePty'),
      ),
      CloseIO: unary(
        empty((ctx, req: any) => t.closeIO(ctx, req)),
        opts('CloseIO'),
      ),
      Pause: unary(
        empty((ctx, req: any) => t.pause(ctx, req)),
        opts('Pause'),
      ),
      Resume: unary(
        empty((ctx, req: any) => t.resume(ctx, req)),
        opts('Resume'),
      ),
      ListPids: unary((ctx, req: any) => t.listPids(ctx, req), opts('ListPids')),
      Checkpoint: unary((ctx, req: any) => t.checkpoint(ctx, req), opts('Checkpoint')),
      Update: unary(
        empty((ctx, req: any) => t.update(ctx, req)),
        opts('Update'),
      ),
      Metrics: unary((ctx, req: any) => t.metrics(ctx, req), opts('Metrics')),
      Wait: unary((ctx, req: any) => t.wait(ctx, req), opts('Wait')),
    });
  }
}
