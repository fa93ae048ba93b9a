export { snapshotField } from '@berth/api';
export {
  defaultNativeConfig,
  defaultOverlayConfig,
  type NativeConfig,
  nativeFromConfig,
  type OverlayConfig,
  overlayFromConfig,
} from './config';
export { copyTree } from './copy-tree';
export { diskUsage } from './disk-usage';
export {
  type ServeOptions,
  SNAPSHOTS_SERVICE,
  type SnapshotsServiceOptions,
  type SnapshotterResolver,
  type SnapshotterServer,
  serveSnapshotter,
  snapshotsServiceDefinition,
  snapshotsServiceHandlers,
} from './grpc';
export { LocalSnapshotter, type LocalSnapshotterOptions } from './local-snapshotter';
export { MetaStore } from './metastore';
export { NativeSnapshotter, type NativeSnapshotterOptions, openNativeSnapshotter } from './native';
export {
  OverlaySnapshotter,
  type OverlaySnapshotterOptions,
  openOverlaySnapshotter,
  UPPERDIR_LABEL,
} from './overlay';
export { checkOverlaySupport, needsUserXattr, runningInUserNS, supportsIndex } from './overlay-support';
