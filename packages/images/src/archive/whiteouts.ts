import type { Stats } from 'node:fs';
import { lgetxattr, lsetxattr } from '@berth/sys';

/** `.wh.<name>` in a layer deletes `<name>` from the layers below (OCI image spec). */
export const WHITEOUT_PREFIX = '.wh.';
/** Names starting `.wh..wh.` are markers, not deletions. */
export const WHITEOUT_META_PREFIX = '.wh..wh.';
/** `.wh..wh..opq` in a directory hides everything the layers below put there. */
export const WHITEOUT_OPAQUE = '.wh..wh..opq';

/** The xattr overlayfs reads to make a directory of the upper layer opaque. */
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

/**
 * How whiteouts are applied:
 * - `overlay`: the target is an overlayfs upper directory; a deletion becomes a 0/0
 *   character device and an opaque directory gets `trusted.overlay.opaque=y`.
 * - `direct`: the target is a whole tree (native snapshot, mounted overlay); deletions
 *   remove the paths and an opaque directory loses what this layer did not add.
 */
export type WhiteoutMode = 'overlay' | 'direct';

export type WhiteoutKind = { kind: 'opaque' } | { kind: 'delete'; name: string } | undefined;

/** What a base name means as a whiteout, or undefined for an ordinary name. */
export function parseWhiteout(base: string): WhiteoutKind {
  if (!base.startsWith(WHITEOUT_PREFIX)) return undefined;
  if (base === WHITEOUT_OPAQUE) return { kind: 'opaque' };
  return { kind: 'delete', name: base.slice(WHITEOUT_PREFIX.length) };
}

/** An overlayfs whiteout: a character device 0/0. */
export function isOverlayWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

export function setOverlayOpaque(dir: string): void {
  lsetxattr(dir, OVERLAY_OPAQUE_XATTR, 'y');
}

export function isOverlayOpaque(dir: string): boolean {
  try {
    return lgetxattr(dir, OVERLAY_OPAQUE_XATTR)?.toString() === 'y';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENODATA') return false;
    throw e;
  }
}
