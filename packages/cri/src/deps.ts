import type {
  ContainerStore,
  ContentStore,
  Context,
  EventSubscriber,
  Image,
  ImageStore,
  Labels,
  LeaseManager,
  Publisher,
  Snapshotter,
  TaskService,
} from '@berth/api';
import type { CredentialsFunc } from '@berth/images';

/** What the plugin logs through (the daemon's logger fits). */
export interface CriLog {
  with(fields: Record<string, string | number | boolean | undefined>): CriLog;
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export const nullLog: CriLog = {
  with: () => nullLog,
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

export interface PullOptions {
  /** The snapshotter the layers are unpacked into. */
  snapshotter: string;
  /** hosts.toml directory (registry.config_path); '' for none. */
  hostsDir?: string;
  /** The request's credentials (AuthConfig), asked per registry host. */
  credentials?: CredentialsFunc;
  /** Labels of the image record. */
  labels?: Labels;
  /** The name the image record gets (default: the normalized reference). */
  name?: string;
}

/** Pulls an image and unpacks it, in-process (the daemon's transfer service does the work). */
export interface ImagePuller {
  pull(ctx: Context, reference: string, opts: PullOptions): Promise<Image>;
}

/**
 * What the CRI plugin is handed by the daemon: containerd's services, in-process, and its
 * own directories. Everything is namespaced by the Context passed (the CRI uses `k8s.io`).
 */
export interface CriDeps {
  content: ContentStore;
  images: ImageStore;
  containers: ContainerStore;
  leases: LeaseManager;
  /** A snapshotter by name, metadata-wrapped (InvalidArgument when none has the name). */
  snapshotter(name: string): Snapshotter;
  tasks: TaskService;
  /**
   * berth's shim writes a container's CRI log itself (stdio URI cri-log://): asks the task's
   * shim to reopen it at its path (ReopenContainerLog). NotFound when there is no such task.
   */
  reopenShimLog(ctx: Context, containerId: string): Promise<void>;
  events: EventSubscriber & Publisher;
  puller: ImagePuller;
  /**
   * The directory a snapshotter keeps its snapshots in (`<root>/io.containerd.snapshotter.v1.<name>`):
   * the image filesystem ImageFsInfo reports.
   */
  snapshotterRoot(name: string): string;
  /** `<root>/io.containerd.grpc.v1.cri`: records that outlive a reboot. */
  root: string;
  /** `<state>/io.containerd.grpc.v1.cri`: runtime files (sandboxes, netns mounts). */
  state: string;
  /** The daemon's gRPC socket (shims are given it). */
  address: string;
  log: CriLog;
}

/** containerd's namespace for everything the CRI makes. */
export const CRI_NAMESPACE = 'k8s.io';
