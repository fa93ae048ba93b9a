import { NotImplementedError } from '@berth/api';

export const MediaTypes = {
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

const BY_MEDIA_TYPE: Record<string, Compression> = {
  [MediaTypes.ociLayer]: 'none',
  [MediaTypes.ociLayerGzip]: 'gzip',
  [MediaTypes.ociLayerZstd]: 'zstd',
  [MediaTypes.ociLayerNondistributable]: 'none',
  [MediaTypes.ociLayerNondistributableGzip]: 'gzip',
  [MediaTypes.ociLayerNondistributableZstd]: 'zstd',
  [MediaTypes.dockerLayer]: 'none',
  [MediaTypes.dockerLayerGzip]: 'gzip',
  [MediaTypes.dockerForeignLayerGzip]: 'gzip',
};

/**
 * The compression a layer media type declares. NotImplemented for anything else
 * (encrypted layers, unknown suffixes), as containerd's differ answers.
 */
export function layerCompression(mediaType: string): Compression {
  const c = BY_MEDIA_TYPE[mediaType];
  if (c === undefined) throw new NotImplementedError(`unsupported layer media type ${mediaType}`);
  return c;
}

export function isLayerMediaType(mediaType: string): boolean {
  return BY_MEDIA_TYPE[mediaType] !== undefined;
}
