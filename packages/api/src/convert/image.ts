import type { Descriptor } from '../descriptor';
import type { Image as ImageMessage } from '../gen/containerd/services/images/v1/images';
import type { Image } from '../images';
import { fromTimestamp, toTimestamp } from '../time';
import { descriptorFromWire, descriptorToWire } from './descriptor';

/** An image as containerd.services.images.v1.Image; times when the image has them. */
export function imageToWire(
  image: Omit<Image, 'createdAt' | 'updatedAt'> & Partial<Pick<Image, 'createdAt' | 'updatedAt'>>,
): ImageMessage {
  return {
    name: image.name,
    labels: image.labels ?? {},
    target: image.target ? descriptorToWire(image.target) : undefined,
    createdAt: image.createdAt ? toTimestamp(image.createdAt) : undefined,
    updatedAt: image.updatedAt ? toTimestamp(image.updatedAt) : undefined,
  };
}

/**
 * An image off the wire. A missing target stays missing (the store refuses it with the
 * error containerd gives); absent times are the epoch.
 */
export function imageFromWire(m: ImageMessage | null | undefined): Image {
  return {
    name: m?.name ?? '',
    labels: { ...(m?.labels ?? {}) },
    target: (m?.target ? descriptorFromWire(m.target) : undefined) as Descriptor,
    createdAt: fromTimestamp(m?.createdAt),
    updatedAt: fromTimestamp(m?.updatedAt),
  };
}
