import { PluginType } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../registry';
import type { TaskManager } from '../runtime/manager';
import { TasksLocal } from './tasks-local';
import { TasksServer } from './tasks-server';

/** io.containerd.service.v1 "tasks-service": tasks of containers, run by the v2 runtime's shims. */
export const tasksServicePlugin: DaemonRegistration<undefined, TasksLocal> = {
  type: PluginType.Service,
  id: 'tasks-service',
  requires: [PluginType.Event, PluginType.Runtime, PluginType.Metadata],
  init: async (ic) => {
    const runtime = await ic.getById<TaskManager>(PluginType.Runtime, 'task');
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    return new TasksLocal(runtime, db.containers, ic.log);
  },
};

/** io.containerd.grpc.v1 "tasks": containerd.services.tasks.v1.Tasks. */
export const tasksGrpcPlugin: DaemonRegistration<undefined, TasksServer> = {
  type: PluginType.GRPC,
  id: 'tasks',
  requires: [PluginType.Service],
  init: async (ic) =>
    new TasksServer(await ic.getById<TasksLocal>(PluginType.Service, 'tasks-service'), ic.log),
};
