import type { Context } from './context';

/** containerd's plugin type ids, version suffix included: a version is never changed in place. */
export const PluginType = {
  Content: 'io.containerd.content.v1',
  Snapshot: 'io.containerd.snapshotter.v1',
  Metadata: 'io.containerd.metadata.v1',
  Differ: 'io.containerd.differ.v1',
  Runtime: 'io.containerd.runtime.v2',
  Service: 'io.containerd.service.v1',
  GRPC: 'io.containerd.grpc.v1',
  Event: 'io.containerd.event.v1',
  GC: 'io.containerd.gc.v1',
  Lease: 'io.containerd.lease.v1',
  Internal: 'io.containerd.internal.v1',
  TTRPC: 'io.containerd.ttrpc.v1',
  Transfer: 'io.containerd.transfer.v1',
} as const;
export type PluginTypeId = (typeof PluginType)[keyof typeof PluginType] | (string & {});

/** What a plugin's init receives from the registry. */
export interface InitContext<C = unknown> {
  /** `<root>/<type>.<id>`: the plugin's own directory under the daemon root. */
  readonly root: string;
  /** `<state>/<type>.<id>`. */
  readonly state: string;
  /** The plugin's config: its defaults merged with `[plugins."<type>.<id>"]`. */
  readonly config: C;
  /** The daemon's gRPC address (shims and proxies need it). */
  readonly address: string;
  /** Sets values reported through Introspection (exports). */
  readonly exports: Record<string, string>;
  readonly ctx: Context;
  /** The instance of the (single) plugin of a type this one requires. */
  get<T>(type: PluginTypeId): Promise<T>;
  /** Every initialised instance of a type, by id. */
  getAll<T>(type: PluginTypeId): Promise<Map<string, T>>;
  /** One plugin by type and id. */
  getById<T>(type: PluginTypeId, id: string): Promise<T>;
}

export interface Registration<C = unknown, T = unknown> {
  type: PluginTypeId;
  id: string;
  /** Plugin types initialised before this one; `*` means every other type. */
  requires?: PluginTypeId[];
  /** Default configuration, printed by `berthd config default`. */
  config?: C;
  init(ic: InitContext<C>): Promise<T> | T;
}

/** Returned (thrown) by an init that chooses not to load, as containerd's ErrSkipPlugin. */
export class SkipPluginError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'SkipPluginError';
  }
}
