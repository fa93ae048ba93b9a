// containerd's `oci` package for berth: the default runtime spec and composable options.
export { replaceOrAppendEnv } from './env';
export { type ImageConfigOptions, parseImageConfig, withImageConfig } from './image-config';
export {
  parseMountFlag,
  withHostHostsFile,
  withHostLocaltime,
  withHostResolvconf,
  withMounts,
  withoutMounts,
} from './mounts';
export {
  withAddedCapabilities,
  withAllDevicesAllowed,
  withAnnotations,
  withCapabilities,
  withCgroup,
  withCPUShares,
  withDefaultPathEnv,
  withDefaultUnixDevices,
  withDroppedCapabilities,
  withEnv,
  withHostNamespace,
  withHostname,
  withLinuxNamespace,
  withMemoryLimit,
  withNamespacedCgroup,
  withNetHost,
  withNewPrivileges,
  withNoNewPrivileges,
  withProcessArgs,
  withProcessCwd,
  withRootfsPath,
  withRootfsReadonly,
  withTTY,
  withTTYSize,
} from './opts';
export {
  capabilitiesFromMask,
  currentCapabilities,
  hostDevices,
  KNOWN_CAPABILITIES,
  withAllCurrentCapabilities,
  withHostDevices,
  withMaskedPaths,
  withPrivileged,
  withReadonlyPaths,
  withSeccompUnconfined,
  withWriteableCgroupfs,
  withWriteableSysfs,
} from './privileged';
export {
  directoryReader,
  type GroupEntry,
  type PasswdEntry,
  parseGroup,
  parsePasswd,
  type RootfsReader,
  resolveInRoot,
} from './rootfs';
export { type RunSpecOptions, runSpecOpts } from './run';
export {
  applyOpts,
  compose,
  DEFAULT_UNIX_ENV,
  defaultMounts,
  defaultSpec,
  generateSpec,
  OCI_VERSION,
  type SpecContext,
  type SpecOpt,
  specToAny,
} from './spec';
export type * from './types';
export {
  withAdditionalGIDs,
  withAppendAdditionalGroups,
  withUIDGID,
  withUser,
  withUserId,
  withUsername,
} from './user';
