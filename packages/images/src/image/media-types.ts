import { isLayerMediaType } from '../archive/media-types';

/** Manifest, index and config media types of OCI and Docker schema 2. */
export const ImageMediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1Manifest: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerSchema1Json: 'application/vnd.docker.distribution.manifest.v1+json',
  ociLayout: 'application/vnd.oci.layout.header.v1+json',
} as const;

/** What a registry is asked for when resolving (containerd's Accept list). */
export const MANIFEST_ACCEPT = [
  ImageMediaTypes.dockerManifest,
  ImageMediaTypes.dockerManifestList,
  ImageMediaTypes.ociManifest,
  ImageMediaTypes.ociIndex,
  '*/*',
].join(', ');

export function isManifestType(mt: string): boolean {
  return mt === ImageMediaTypes.ociManifest || mt === ImageMediaTypes.dockerManifest;
}

export function isIndexType(mt: string): boolean {
  return mt === ImageMediaTypes.ociIndex || mt === ImageMediaTypes.dockerManifestList;
}

export function isConfigType(mt: string): boolean {
  return mt === ImageMediaTypes.ociConfig || mt === ImageMediaTypes.dockerConfig;
}

export function isSchema1Type(mt: string): boolean {
  return mt === ImageMediaTypes.dockerSchema1Manifest || mt === ImageMediaTypes.dockerSchema1Json;
}

/** Layer media types, including non-distributable ones and zstd (from the archive code). */
export function isLayerType(mt: string): boolean {
  return isLayerMediaType(mt);
}

/**
 * The ingest ref containerd's fetcher uses for a blob (`layer-sha256:...`): deterministic per
 * digest, so a download interrupted by a crash resumes into the same ingest.
 */
export function ingestRef(desc: {
  mediaType: string;
  digest: string;
  annotations?: Record<string, string>;
}): string {
  let key = desc.digest;
  const name = desc.annotations?.['org.opencontainers.image.ref.name'];
  if (name) key = `${name}@${desc.digest}`;
  const mt = desc.mediaType;
  if (isManifestType(mt)) return `manifest-${key}`;
  if (isIndexType(mt)) return `index-${key}`;
  if (isLayerType(mt)) return `layer-${key}`;
  if (isConfigType(mt)) return `config-${key}`;
  return `unknown-${key}`;
}
