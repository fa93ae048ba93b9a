import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, statfs } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { isNoSpaceErrno, SpaceReserve } from '@berth/api';
import { mountAll, unmountAll } from '@berth/sys';
import { RESERVE_FILE } from './metastore';

const TMPFS_MAGIC = 0x01021994;

/** Whether the kernel's overlay has the `index` feature, which the snapshotter turns off per mount. */
export function supportsIndex(): boolean {
  return existsSync('/sys/module/overlay/parameters/index');
}

/** True inside a user namespace other than the initial one. */
export function runningInUserNS(): boolean {
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return !(map.length === 3 && map[0] === '0' && map[1] === '0' && map[2] === '4294967295');
  } catch {
    return false;
  }
}

function kernelAtLeast(major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release());
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > major || (maj === major && min >= minor);
}

async function tryOverlay(dir: string, extra: string[]): Promise<void> {
  const td = await mkdtemp(join(dir, 'overlay-check-'));
  try {
    for (const d of ['lower1', 'lower2', 'upper', 'work', 'merged']) await mkdir(join(td, d));
    const merged = join(td, 'merged');
    await mountAll(
      [
        {
          type: 'overlay',
          source: 'overlay',
          options: [
            ...extra,
            `lowerdir=${join(td, 'lower2')}:${join(td, 'lower1')}`,
            `upperdir=${join(td, 'upper')}`,
            `workdir=${join(td, 'work')}`,
          ],
        },
      ],
      merged,
    );
    await unmountAll(merged);
  } finally {
    await rm(td, { recursive: true, force: true });
  }
}

/**
 * Whether overlay mounts need `userxattr` (as containerd decides): never for the initial
 * user namespace; inside another one, not on tmpfs, always from Linux 5.11, and on older
 * kernels when a trial mount with it works.
 */
export async function needsUserXattr(dir: string): Promise<boolean> {
  if (!runningInUserNS()) return false;
  try {
    if ((await statfs(dir)).type === TMPFS_MAGIC) return false;
  } catch {}
  if (kernelAtLeast(5, 11)) return true;
  try {
    await tryOverlay(dir, ['userxattr']);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves when overlayfs with several lower directories works on the filesystem of dir
 * (a trial mount, as containerd's overlayutils.Supported); rejects with the reason otherwise.
 */
export async function checkOverlaySupport(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const extra = (await needsUserXattr(dir)) ? ['userxattr'] : [];
  try {
    await tryOverlay(dir, extra);
  } catch (e) {
    // The trial needs a few directories: on a full disk, spend the snapshotter's own reserve
    // (metastore.ts), or the daemon would start without overlayfs and never free the disk.
    if (!isNoSpaceErrno(e) || !new SpaceReserve(join(dir, RESERVE_FILE), 0).release()) throw e;
    await tryOverlay(dir, extra);
  }
}
