export { grpcTarget } from './address';
export {
  type CopyOptions,
  copyIo,
  DEFAULT_FIFO_DIR,
  type FifoSet,
  type FifoSetOptions,
  fifoSetOf,
  holdFifos,
  type IoStreams,
  newFifoSet,
  ProcessIo,
  removeFifoSet,
} from './cio';
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
export { type Console, type ConsoleSize, currentConsole, handleConsoleResize } from './console';
export { RemoteContainerStore } from './containers';
export { RemoteReaderAt } from './content-reader';
export { type ReadOptions, RemoteContentStore } from './content-store';
export { RemoteWriter, WRITE_CHUNK_SIZE } from './content-writer';
export { RemoteDiff } from './diff';
export { RemoteEventService } from './events';
export { RemoteImageStore } from './images';
export { layersReader } from './layer-reader';
export { RemoteLeaseManager } from './leases';
export { RemoteNamespaceStore } from './namespaces';
export * as oci from './oci';
export { readonlyMounts, withReadonlyRootfs } from './rootfs-mount';
export { RemoteSnapshotter } from './snapshots';
export { ClientStream, STREAMING_SERVICE, streamId } from './streaming';
export {
  type CreateTaskRequest,
  type DeletedProcess,
  type ExecRequest,
  type ExitResult,
  type KillOptions,
  type ProcessInfo,
  type ProcessIoConfig,
  type ProcessStatus,
  RemoteTasks,
  type TaskMetric,
  type TaskProcess,
} from './tasks';
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
export { chainIdOf, type UnpackLayer, type UnpackOptions, type UnpackResult, unpackLayers } from './unpack';
