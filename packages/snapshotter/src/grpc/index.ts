export {
  fromTimestamp,
  type InfoMessage,
  infoFromMessage,
  infoToMessage,
  type KindMessage,
  type MountMessage,
  mountFromMessage,
  mountToMessage,
  type TimestampMessage,
  toTimestamp,
} from './convert';
export { type ServeOptions, type SnapshotterServer, serveSnapshotter } from './server';
export {
  SNAPSHOTS_SERVICE,
  type SnapshotsServiceOptions,
  type SnapshotterResolver,
  snapshotsServiceDefinition,
  snapshotsServiceHandlers,
} from './service';
