import type { DeleteResponse } from '../gen/containerd/services/tasks/v1/tasks';
import type { Process } from '../gen/containerd/types/task/task';
import type { DeletedProcess, TaskProcess } from '../tasks';
import { fromTimestamp } from '../time';

/** A task or exec process off the wire (Tasks.Get, Tasks.List). */
export function processFromWire(m: Partial<Process> | null | undefined): TaskProcess {
  return {
    id: m?.id ?? '',
    containerId: m?.containerId ?? '',
    pid: m?.pid ?? 0,
    status: m?.status ?? 'UNKNOWN',
    stdin: m?.stdin ?? '',
    stdout: m?.stdout ?? '',
    stderr: m?.stderr ?? '',
    terminal: m?.terminal ?? false,
    exitStatus: m?.exitStatus ?? 0,
    exitedAt: fromTimestamp(m?.exitedAt),
  };
}

/** Tasks.Delete and DeleteProcess answers. */
export function deletedProcessFromWire(m: DeleteResponse): DeletedProcess {
  return {
    id: m.id ?? '',
    pid: m.pid ?? 0,
    exitStatus: m.exitStatus ?? 0,
    exitedAt: fromTimestamp(m.exitedAt),
  };
}
