import type { Descriptor, Platform } from '../descriptor';
import type { Descriptor as DescriptorMessage } from '../gen/containerd/types/descriptor';
import type { Platform as PlatformMessage } from '../gen/containerd/types/platform';

/** containerd.types.Descriptor carries media type, digest, size and annotations (no urls, no platform). */
export function descriptorToWire(d: Descriptor): DescriptorMessage {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: d.annotations ?? {} };
}

/** A Descriptor off the wire; annotations only when there are some; an absent one is empty. */
export function descriptorFromWire(m: DescriptorMessage | null | undefined): Descriptor {
  const d: Descriptor = {
    mediaType: m?.mediaType ?? '',
    digest: m?.digest ?? '',
    size: Number(m?.size ?? 0),
  };
  if (m && Object.keys(m.annotations ?? {}).length > 0) d.annotations = { ...m.annotations };
  return d;
}

export function platformToWire(p: Platform): PlatformMessage {
  return { os: p.os, architecture: p.architecture, variant: p.variant ?? '' };
}

/** A Platform off the wire; variant only when set. */
export function platformFromWire(m: PlatformMessage): Platform {
  const p: Platform = { os: m.os ?? '', architecture: m.architecture ?? '' };
  if (m.variant) p.variant = m.variant;
  return p;
}
