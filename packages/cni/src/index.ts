export { type CacheEntry, cacheFile, readCacheEntries } from './cache';
export {
  type BandwidthLimits,
  Cni,
  type CniOptions,
  type CniStatus,
  type PortMapping,
  type SetupOptions,
} from './cni';
export { confToList, listConfFiles, loadConfFile, type NetworkConfigList, parseConfList } from './config';
export { type CniCommand, CniConfigError, CniPluginError } from './errors';
export { createNetns, netnsExists, releaseNetnsDir, removeNetns } from './netns';
export { type NetworkAttachment, toAttachment } from './result';
