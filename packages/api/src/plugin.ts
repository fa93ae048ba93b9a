import type { Context } from './context';
import { FailedPreconditionError } from './errors';
import type { Snapshotter } from './snapshots';

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
  /**
   * The interface the plugin implements, version included: a registration built for a
   * version berthd does not offer (and cannot adapt) is refused at start.
   */
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

/**
 * The interface each plugin type id stands for, split into its family and version:
 * `io.containerd.snapshotter.v1` is version 1 of `io.containerd.snapshotter`.
 */
export interface InterfaceVersion {
  readonly id: PluginTypeId;
  readonly family: string;
  readonly version: number;
}

/** Splits `<family>.v<N>`; undefined for an id without a version suffix. */
export function parseInterfaceId(id: string): InterfaceVersion | undefined {
  const m = /^(.+)\.v([1-9][0-9]*)$/.exec(id);
  return m ? { id, family: m[1]!, version: Number(m[2]) } : undefined;
}

/**
 * The interface versions this @berth/api defines, by family: what berthd built on it offers.
 * Derived from PluginType so the two cannot disagree; a breaking change to an interface adds
 * its new id to PluginType (the family's entry here moves to it) and an InterfaceAdapter from
 * the old one, so plugins built for the old version keep loading.
 */
export const InterfaceVersions: Readonly<Record<string, InterfaceVersion>> = Object.freeze(
  Object.fromEntries(
    Object.values(PluginType).map((id) => {
      const v = parseInterfaceId(id)!;
      return [v.family, Object.freeze(v)];
    }),
  ),
);

/**
 * Turns an implementation of one interface version into one of another (a v1 snapshotter
 * served where berthd offers v2). None exist yet: every family is at its first version.
 */
export interface InterfaceAdapter<From = unknown, To = unknown> {
  readonly from: PluginTypeId;
  readonly to: PluginTypeId;
  adapt(impl: From): To;
}

/**
 * A plugin built for an interface version berthd does not offer and cannot adapt. The
 * message names the plugin, the version it implements and the one berthd offers.
 */
export class InterfaceVersionError extends FailedPreconditionError {
  constructor(
    readonly plugin: string,
    readonly implemented: string,
    readonly offered: string | undefined,
  ) {
    super(
      offered === undefined
        ? `plugin "${plugin}" implements ${implemented}, berthd offers no ${parseInterfaceId(implemented)?.family ?? implemented} interface`
        : `plugin "${plugin}" implements ${implemented}, berthd offers ${offered}`,
    );
  }
}

/**
 * How an implementation of `implemented` becomes the interface berthd offers for its family:
 * the identity when the versions agree, an adapter's `adapt` when one maps them, otherwise
 * InterfaceVersionError naming `plugin` and both versions. An id outside every family berthd
 * knows, or without a version (a test's own type), has nothing to check and passes unchanged. `offered` is the
 * version berthd serves (InterfaceVersions by default).
 */
export function resolveInterface(
  plugin: string,
  implemented: string,
  adapters: readonly InterfaceAdapter<any, any>[] = [],
  offered: Readonly<Record<string, InterfaceVersion>> = InterfaceVersions,
): { id: PluginTypeId; adapt: (impl: unknown) => unknown } {
  const v = parseInterfaceId(implemented);
  const target = v && offered[v.family];
  if (!v || !target) return { id: implemented, adapt: (impl) => impl };
  if (target.version === v.version) return { id: target.id, adapt: (impl) => impl };
  const adapter = adapters.find((a) => a.from === implemented && a.to === target.id);
  if (!adapter) throw new InterfaceVersionError(plugin, implemented, target.id);
  return { id: target.id, adapt: (impl) => adapter.adapt(impl) };
}

/** The interface versions an in-process snapshotter module can declare today. */
export type SnapshotterInterface = typeof PluginType.Snapshot;

/**
 * What a snapshotter package exports as `plugin` for berthd to load it in-process
 * (`[plugins."io.containerd.snapshotter.v1.<id>"] module = "<package>"`). `implements` is
 * written as a literal in the package, not read from PluginType at run time: it records the
 * version the package was built for, which berthd checks against the one it offers.
 */
export interface SnapshotterPlugin<C = Record<string, unknown>> {
  readonly implements: SnapshotterInterface;
  /** Default options; the plugin's config table (less `module`) is merged over them. */
  readonly config?: C;
  init(ic: InitContext<C>): Promise<Snapshotter> | Snapshotter;
}
