export { type ApplyOptions, type ApplyResult, applyLayer } from './archive/apply';
export { ApplyPool, defaultApplyPool } from './archive/apply-pool';
export {
  type CompressOptions,
  compressStream,
  type DecompressOptions,
  decompressStream,
  detectCompression,
  findZstd,
  type ZstdImplementation,
} from './archive/compression';
export { type Change, type ChangeKind, changes, type DiffOptions, diffDirectories } from './archive/diff';
export { type Compression, isLayerMediaType, layerCompression, MediaTypes } from './archive/media-types';
export { cleanEntryName, resolveInRoot } from './archive/root-path';
export type { TarEntryInit, TarEntryType, TarHeader } from './archive/tar-format';
export { readTar, type TarEntry } from './archive/tar-reader';
export { buildTar, type TarInput, tarEntryChunks } from './archive/tar-writer';
export { type TreeDigest, type TreeDigestOptions, treeDigest } from './archive/tree-digest';
export { comparePaths, type WalkEntry, walkTree } from './archive/walk';
export {
  isOverlayOpaque,
  isOverlayWhiteout,
  OVERLAY_OPAQUE_XATTR,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
  type WhiteoutMode,
} from './archive/whiteouts';
export { readonlyMounts, UNCOMPRESSED_LABEL, type WriteDiffOptions, writeDiff } from './archive/write-diff';
export {
  type BlobProgress,
  type BlobStatus,
  type FetchBlobOptions,
  type FetchResult,
  fetchBlob,
  storeBlob,
} from './fetch';
export {
  appendDistributionSource,
  chainId,
  chainIds,
  childGCLabel,
  childrenLabels,
  childrenOf,
  configPlatform,
  DISTRIBUTION_SOURCE_PREFIX,
  descriptorJSON,
  detectManifestType,
  distributionSourceKey,
  GC_REF_CONTENT_PREFIX,
  type Image,
  type ImageConfig,
  type Index,
  MAX_CONFIG_SIZE,
  MAX_MANIFEST_SIZE,
  type Manifest,
  parseImageConfig,
  parseIndex,
  parseManifest,
  SNAPSHOT_REF_LABEL,
  validateDescriptor,
} from './image/manifest';
export {
  ImageMediaTypes,
  ingestRef,
  isConfigType,
  isIndexType,
  isLayerType,
  isManifestType,
  MANIFEST_ACCEPT,
} from './image/media-types';
export {
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  type ExportItem,
  type ExportOptions,
  exportArchive,
  exportImages,
} from './oci-archive/export';
export { type ImportOptions, type ImportResult, importArchive } from './oci-archive/import';
export {
  allPlatforms,
  anyPlatform,
  defaultPlatform,
  defaultPlatformMatcher,
  formatPlatform,
  normalizePlatform,
  onlyPlatform,
  onlyPlatformStrict,
  orderedPlatforms,
  type Platform,
  type PlatformMatcher,
  type PlatformSpec,
  parsePlatform,
  platformMatcher,
} from './platforms';
export {
  createPullLease,
  type PullEvent,
  type PullOptions,
  type PullResult,
  pull,
  selectManifests,
} from './pull';
export { mountCandidate, type PushEvent, type PushOptions, type PushStatus, push } from './push';
export {
  DEFAULT_DOMAIN,
  DEFAULT_TAG,
  familiarReference,
  formatReference,
  type ImageReference,
  normalizeReference,
  type ParseReferenceOptions,
  parseReference,
  referenceObject,
  repositoryName,
  validateTag,
} from './reference';
export { Authorizer, type AuthorizerOptions, type Challenge, parseChallenges } from './remotes/auth';
export {
  type Credentials,
  type CredentialsFunc,
  defaultDockerConfigPath,
  dockerConfigCredentials,
  staticCredentials,
} from './remotes/credentials';
export {
  configureHosts,
  type HostCapability,
  type HostsOptions,
  hostDirCandidates,
  isLocalhost,
  parseHostsToml,
  type RegistryHost,
  type RegistryHosts,
} from './remotes/hosts';
export { HttpTransport, parseRetryAfter, StallError, type TlsSettings } from './remotes/http';
export {
  type BlobStream,
  RegistryClient,
  type RegistryClientOptions,
  RemoteRepository,
  type Resolved,
  retryableTransfer,
} from './remotes/registry';
export { flights, Limiter, SingleFlight } from './single-flight';
export {
  type Applier,
  type LayerUnpacker,
  labelUnpackedConfig,
  mountApplier,
  readContent,
  type UnpackEvent,
  unpackLayer,
} from './unpack';
export {
  manifestForPlatform,
  type UnpackImageOptions,
  type UnpackImageResult,
  unpackImage,
} from './unpack-image';
