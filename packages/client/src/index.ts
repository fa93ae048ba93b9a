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
export { RemoteDiff } from './diff';
export { RemoteEventService } from './events';
export { RemoteImageStore } from './images';
export { RemoteLeaseManager } from './leases';
export { RemoteNamespaceStore } from './namespaces';
export * as oci from './oci';
export { RemoteSnapshotter } from './snapshots';
export { ClientStream, STREAMING_SERVICE, streamId } from './streaming';
export {
  type ExportOptions as TransferExportOptions,
  type ImportOptions as TransferImportOptions,
  isUnimplementedService,
  type PullOptions as TransferPullOptions,
  type PushOptions as TransferPushOptions,
  RemoteTransfer,
  type ResolverOptions,
  TRANSFER_SERVICE,
  type TransferCredentials,
  type TransferPlatform,
  type TransferProgress,
} from './transfer';
