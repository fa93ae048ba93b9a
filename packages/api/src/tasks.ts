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
