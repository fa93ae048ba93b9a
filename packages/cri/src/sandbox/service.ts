import { type Context, NotImplementedError, type wire } from '@berth/api';
import type { CriService } from '../service';

/** Pod sandboxes: a pause container holding the pod's namespaces, networked through CNI. */
export class SandboxManager {
  constructor(private readonly cri: CriService) {}

  /** Reloads the records of an earlier run (called once at start, before serving). */
  async recover(_ctx: Context): Promise<void> {}

  /** NetworkReady for Status. */
  networkStatus(): { ready: boolean; reason: string; message: string } {
    return {
      ready: false,
      reason: 'NetworkPluginNotReady',
      message: 'Network plugin returns error: cni plugin not initialized',
    };
  }

  async run(_ctx: Context, _req: wire.cri.RunPodSandboxRequest): Promise<wire.cri.RunPodSandboxResponse> {
    throw new NotImplementedError('RunPodSandbox: not implemented');
  }

  async stop(_ctx: Context, _req: wire.cri.StopPodSandboxRequest): Promise<wire.cri.StopPodSandboxResponse> {
    throw new NotImplementedError('StopPodSandbox: not implemented');
  }

  async remove(
    _ctx: Context,
    _req: wire.cri.RemovePodSandboxRequest,
  ): Promise<wire.cri.RemovePodSandboxResponse> {
    throw new NotImplementedError('RemovePodSandbox: not implemented');
  }

  async status(
    _ctx: Context,
    _req: wire.cri.PodSandboxStatusRequest,
  ): Promise<wire.cri.PodSandboxStatusResponse> {
    throw new NotImplementedError('PodSandboxStatus: not implemented');
  }

  async list(_ctx: Context, _req: wire.cri.ListPodSandboxRequest): Promise<wire.cri.ListPodSandboxResponse> {
    throw new NotImplementedError('ListPodSandbox: not implemented');
  }

  async updateRuntimeConfig(_ctx: Context, _req: wire.cri.UpdateRuntimeConfigRequest): Promise<void> {}

  async close(): Promise<void> {}
}
