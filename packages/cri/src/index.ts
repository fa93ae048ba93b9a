export {
  BERTH_RUNTIME_TYPE,
  type CriConfig,
  type CriPluginConfig,
  defaultCriPluginConfig,
  passedPodAnnotations,
  RUNC_RUNTIME_TYPE,
  type RuntimeHandler,
  resolveCriConfig,
} from './config';
export {
  CRI_NAMESPACE,
  type CriDeps,
  type CriLog,
  type ImagePuller,
  nullLog,
  type PullOptions,
} from './deps';
export { CRI_IMAGE_LABEL, CRI_IMAGE_LABEL_VALUE, splitReferences } from './image/references';
export {
  listCriImages,
  type ResolvedImage,
  type RuntimeImageConfig,
  readImage,
  resolveImage,
} from './image/resolve';
export { toCriImage } from './image/service';
export { type ContainerRecord, containerName, type SandboxRecord, sandboxName } from './records';
export {
  type DefaultSeccompOptions,
  defaultSeccompProfile,
  type LinuxSeccomp,
  SECCOMP_ARCHITECTURES,
  SECCOMP_GROUPS,
  type SeccompGroup,
} from './security/seccomp';
export {
  CRI_API_VERSION,
  CriService,
  type CriServiceOptions,
  IMAGE_SERVICE,
  RUNTIME_SERVICE,
} from './service';
export {
  type CgroupFigures,
  type CgroupLocation,
  type CgroupMode,
  CgroupParseError,
  CgroupReader,
  type CgroupReaderOptions,
  cgroupfsPath,
  expandSlice,
  type MemoryFigures,
} from './stats/cgroup';
export { CpuSampler, memoryUsage, parseNetDev, workingSet } from './stats/figures';
export { StatsManager, type StatsOptions } from './stats/service';
export { NameIndex, RecordIndex } from './store';
