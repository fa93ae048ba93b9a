import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from './processes';

export interface SmallFilesystem {
  /** Where it is mounted: use it (or a directory in it) as a daemon's --root. */
  readonly dir: string;
  readonly sizeMiB: number;
  readonly kind: 'ext4' | 'tmpfs';
  /** Bytes free to root, as statfs says. */
  free(): number;
}

export interface SmallFilesystemOptions {
  /**
   * `ext4` (default): a loop-mounted image with 4 KiB blocks, as a real disk (a full ext4
   * turns to the journal and frees blocks late); `tmpfs`: a size-limited tmpfs.
   */
  kind?: 'ext4' | 'tmpfs';
}

/** Whether this process may mount (root; loop devices for ext4). */
export function canMountSmallFilesystem(): boolean {
  return process.getuid?.() === 0;
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/**
 * Mounts a file system of `sizeMiB` MiB, runs `fn` with it and always unmounts it (and
 * detaches the loop device, removes the image) afterwards, even when `fn` throws. Whatever
 * `fn` started on it (daemons) must be stopped by `fn` before it returns: a busy mount is
 * unmounted lazily.
 */
export async function withSmallFilesystem<T>(
  sizeMiB: number,
  fn: (fs: SmallFilesystem) => Promise<T>,
  opts: SmallFilesystemOptions = {},
): Promise<T> {
  const kind = opts.kind ?? 'ext4';
  const base = makeTempDir('berth-smallfs-');
  const dir = join(base, 'mnt');
  const image = join(base, 'disk.img');
  mkdirSync(dir);
  let mounted = false;
  try {
    if (kind === 'tmpfs') {
      sh('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs', dir]);
    } else {
      sh('truncate', ['-s', `${sizeMiB}M`, image]);
      // 4 KiB blocks (mke2fs picks 1 KiB under 512 MiB): the block size of real disks.
      sh('mkfs.ext4', ['-q', '-F', '-b', '4096', '-m', '0', image]);
      sh('mount', ['-o', 'loop', image, dir]);
    }
    mounted = true;
    const free = () => {
      const out = sh('stat', ['-f', '-c', '%f %S', dir]).trim().split(' ');
      return Number(out[0]) * Number(out[1]);
    };
    return await fn({ dir, sizeMiB, kind, free });
  } finally {
    if (mounted) {
      try {
        // -d detaches the loop device with the mount.
        sh('umount', kind === 'ext4' ? ['-d', dir] : [dir]);
      } catch {
        sh('umount', ['-l', dir]);
      }
    }
    rmSync(base, { recursive: true, force: true });
  }
}
