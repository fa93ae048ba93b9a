import type { Mount } from '@berth/api';
import { withTempMount } from '@berth/sys';

/**
 * Mounts that only read: how a container's root filesystem is looked at to resolve users
 * (containerd's tryReadonlyMounts; binds get `ro` too).
 */
export function readonlyMounts(mounts: readonly Mount[]): Mount[] {
  return mounts.map((m) => {
    const bind = m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
    if (m.type !== 'overlay' && !bind) return m;
    return { ...m, options: [...m.options.filter((o) => o !== 'rw' && o !== 'ro'), 'ro'] };
  });
}

/**
 * Mounts a snapshot's mounts read-only on a temporary directory, runs fn with it and always
 * unmounts (needs root, and the daemon on this host: its mounts name host paths).
 */
export function withReadonlyRootfs<T>(
  mounts: readonly Mount[],
  fn: (root: string) => Promise<T>,
): Promise<T> {
  return withTempMount(readonlyMounts(mounts), fn);
}
