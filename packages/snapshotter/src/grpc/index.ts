export {
  type InfoMessage,
  infoFromMessage,
  infoToMessage,
  type KindMessage,
  type MountMessage,
  mountFromMessage,
  mountToMessage,
} from './convert';
export { type ServeOptions, type SnapshotterServer, serveSnapshotter } from './server';
export {
  SNAPSHOTS_SERVICE,
  type SnapshotsServiceOptions,
  type SnapshotterResolver,
  snapshotsServiceDefinition,
  snapshotsServiceHandlers,
} from './service';
