export { type ServeOptions, type SnapshotterServer, serveSnapshotter } from './server';
export {
  SNAPSHOTS_SERVICE,
  type SnapshotsServiceOptions,
  type SnapshotterResolver,
  snapshotsServiceDefinition,
  snapshotsServiceHandlers,
} from './service';
