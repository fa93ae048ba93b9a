import { type Context, NotImplementedError, type wire } from '@berth/api';
import type { CriService } from '../service';

/** Containers of pods: OCI specs from CRI configs, run through the daemon's task service. */
export class ContainerManager {
  constructor(private readonly cri: CriService) {}

  /** Reloads the records of an earlier run (after the sandboxes'), called once at start. */
  async recover(_ctx: Context): Promise<void> {}

  async create(
    _ctx: Context,
    _req: wire.cri.CreateContainerRequest,
  ): Promise<wire.cri.CreateContainerResponse> {
    throw new NotImplementedError('CreateContainer: not implemented');
  }

  async start(_ctx: Context, _req: wire.cri.StartContainerRequest): Promise<wire.cri.StartContainerResponse> {
    throw new NotImplementedError('StartContainer: not implemented');
  }

  async stop(_ctx: Context, _req: wire.cri.StopContainerRequest): Promise<wire.cri.StopContainerResponse> {
    throw new NotImplementedError('StopContainer: not implemented');
  }

  async remove(
    _ctx: Context,
    _req: wire.cri.RemoveContainerRequest,
  ): Promise<wire.cri.RemoveContainerResponse> {
    throw new NotImplementedError('RemoveContainer: not implemented');
  }

  async status(
    _ctx: Context,
    _req: wire.cri.ContainerStatusRequest,
  ): Promise<wire.cri.ContainerStatusResponse> {
    throw new NotImplementedError('ContainerStatus: not implemented');
  }

  async list(_ctx: Context, _req: wire.cri.ListContainersRequest): Promise<wire.cri.ListContainersResponse> {
    throw new NotImplementedError('ListContainers: not implemented');
  }

  async updateResources(
    _ctx: Context,
    _req: wire.cri.UpdateContainerResourcesRequest,
  ): Promise<wire.cri.UpdateContainerResourcesResponse> {
    throw new NotImplementedError('UpdateContainerResources: not implemented');
  }

  async execSync(_ctx: Context, _req: wire.cri.ExecSyncRequest): Promise<wire.cri.ExecSyncResponse> {
    throw new NotImplementedError('ExecSync: not implemented');
  }

  /** Stops every container of the pod (StopPodSandbox's first step). A stub until containers exist. */
  async stopAllInSandbox(_ctx: Context, _sandboxId: string): Promise<void> {}

  /** Removes every container of the pod (RemovePodSandbox's). A stub until containers exist. */
  async removeAllInSandbox(_ctx: Context, _sandboxId: string): Promise<void> {}

  async close(): Promise<void> {}
}
