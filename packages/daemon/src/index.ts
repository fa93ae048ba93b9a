export { builtins } from './builtins';
export {
  CONFIG_VERSION,
  configFromToml,
  configToToml,
  type DaemonConfig,
  DEFAULT_ADDRESS,
  DEFAULT_CONFIG_PATH,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_ROOT,
  DEFAULT_STATE,
  defaultConfig,
  type LoadedConfig,
  loadConfig,
  mergePluginConfig,
  type ProxyPluginConfig,
  parseConfig,
} from './config';
export {
  createTopLevelDirectories,
  type Daemon,
  type DaemonOptions,
  interfaceAdapters,
  startDaemon,
} from './daemon';
export { Exchange, type ExchangeEnvelope, type Subscription, validateTopic } from './events/exchange';
export {
  type Clock,
  type Collector,
  DEFAULT_POLICY,
  formatDuration,
  GCScheduler,
  parseDuration,
  type SchedulerPolicy,
} from './gc/scheduler';
export {
  createLogger,
  formatLine,
  LOG_LEVELS,
  type Logger,
  type LogLevel,
  nullLogger,
  parseLogLevel,
} from './log';
export { type Flags, main, parseFlags, resolveConfig, startFailure, USAGE } from './main';
export {
  loadSnapshotterModule,
  MODULE_KEY,
  moduleOptions,
  moduleRegistrations,
  moduleSearchPaths,
} from './plugins/module-snapshotters';
export {
  FileReaderAt,
  type ReaderCacheOptions,
  ReaderCacheStore,
  SYNC_READ_MAX,
} from './plugins/reader-cache';
export {
  checkInterfaceVersions,
  type DaemonRegistration,
  mergeDeep,
  type PluginInitContext,
  type PluginRecord,
  PluginRegistry,
  type PluginState,
  pluginUri,
  type RegistryOptions,
  sortRegistrations,
} from './registry';
export { BERTH_RUNTIME, RUNC_RUNTIME, resolveShimBinary, shimBinaryName } from './runtime/binary';
export { ShimEventsServer, ttrpcAddressOf } from './runtime/events-server';
export { type RuntimeCreateOptions, TaskManager, type TaskManagerConfig } from './runtime/manager';
export {
  GrpcServer,
  type GrpcService,
  isGrpcService,
  prepareSocket,
  type ServiceRegistrar,
  socketPath,
} from './server/grpc-server';
export { bidi, send, serverStream, unary } from './server/handlers';
export { REVISION, VERSION } from './version';
