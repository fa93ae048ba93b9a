export { type ApplyOptions, type ApplyResult, applyLayer } from './archive/apply';
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
