export { grpcTarget } from './address';
export {
  Client,
  type ConnectOptions,
  connect,
  connectSnapshotter,
  type PluginInfo,
  type PluginPlatform,
  type ServerInfo,
  type VersionInfo,
} from './client';
export { RemoteContainerStore } from './containers';
export { RemoteReaderAt } from './content-reader';
export { type ReadOptions, RemoteContentStore } from './content-store';
export { RemoteWriter, WRITE_CHUNK_SIZE } from './content-writer';
export { RemoteEventService } from './events';
export { RemoteImageStore } from './images';
export { RemoteLeaseManager } from './leases';
export { RemoteNamespaceStore } from './namespaces';
export * as oci from './oci';
export { RemoteSnapshotter } from './snapshots';
