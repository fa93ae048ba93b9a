import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { InvalidArgumentError, type Mount } from '@berth/api';
import { MS, mount, unmount } from './syscalls';

interface FlagEffect {
  clear: boolean;
  flag: number;
}

// Option words that are mount(2) flags rather than filesystem data (as mount(8) reads them).
const FLAGS: Record<string, FlagEffect> = {
  async: { clear: true, flag: MS.SYNCHRONOUS },
  atime: { clear: true, flag: MS.NOATIME },
  bind: { clear: false, flag: MS.BIND },
  defaults: { clear: false, flag: 0 },
  dev: { clear: true, flag: MS.NODEV },
  diratime: { clear: true, flag: MS.NODIRATIME },
  dirsync: { clear: false, flag: MS.DIRSYNC },
  exec: { clear: true, flag: MS.NOEXEC },
  mand: { clear: false, flag: MS.MANDLOCK },
  noatime: { clear: false, flag: MS.NOATIME },
  nodev: { clear: false, flag: MS.NODEV },
  nodiratime: { clear: false, flag: MS.NODIRATIME },
  noexec: { clear: false, flag: MS.NOEXEC },
  nomand: { clear: true, flag: MS.MANDLOCK },
  norelatime: { clear: true, flag: MS.RELATIME },
  nostrictatime: { clear: true, flag: MS.STRICTATIME },
  nosuid: { clear: false, flag: MS.NOSUID },
  rbind: { clear: false, flag: MS.BIND | MS.REC },
  relatime: { clear: false, flag: MS.RELATIME },
  remount: { clear: false, flag: MS.REMOUNT },
  ro: { clear: false, flag: MS.RDONLY },
  rw: { clear: true, flag: MS.RDONLY },
  strictatime: { clear: false, flag: MS.STRICTATIME },
  suid: { clear: true, flag: MS.NOSUID },
  sync: { clear: false, flag: MS.SYNCHRONOUS },
};

const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

export interface ParsedMountOptions {
  flags: number;
  propagation: number;
  /** Filesystem-specific options, comma-joined. */
  data: string[];
}

export function parseMountOptions(options: readonly string[]): ParsedMountOptions {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = FLAGS[o];
    if (f) {
      flags = f.clear ? flags & ~f.flag : flags | f.flag;
      continue;
    }
    const p = PROPAGATION[o];
    if (p !== undefined) {
      propagation |= p;
      continue;
    }
    data.push(o);
  }
  return { flags, propagation, data };
}

// The kernel copies mount data into one page; leave room as containerd does.
const PAGE_SIZE = 4096;
const MAX_DATA = PAGE_SIZE - 512;

/**
 * An overlay option string too long for one page is shortened by making every lowerdir
 * relative to their common parent; the mount then runs in a child that changes into it.
 */
function compactOverlayData(data: string[]): { data: string[]; cwd?: string } {
  if (data.join(',').length < MAX_DATA) return { data };
  const i = data.findIndex((o) => o.startsWith('lowerdir='));
  if (i < 0) return { data };
  const lowers = data[i]!.slice('lowerdir='.length).split(':');
  let common = dirname(lowers[0]!);
  for (;;) {
    if (lowers.every((l) => l.startsWith(common + sep) || l === common)) break;
    const up = dirname(common);
    if (up === common) return { data };
    common = up;
  }
  const out = [...data];
  out[i] = `lowerdir=${lowers.map((l) => relative(common, l)).join(':')}`;
  const rel = (key: string) => {
    const j = out.findIndex((o) => o.startsWith(`${key}=`));
    if (j >= 0) out[j] = `${key}=${relative(common, out[j]!.slice(key.length + 1))}`;
  };
  rel('upperdir');
  rel('workdir');
  if (out.join(',').length >= PAGE_SIZE) {
    throw new InvalidArgumentError(
      `overlay mount options are too long (${out.join(',').length} bytes) even when relative to ${common}`,
    );
  }
  return { data: out, cwd: common };
}

/** Performs one Mount onto target with containerd's semantics (read-only binds, propagation). */
export function mountOne(m: Mount, target: string): void {
  const { flags, propagation, data } = parseMountOptions(m.options);
  let cwd: string | undefined;
  let opts = data;
  if (m.type === 'overlay') ({ data: opts, cwd } = compactOverlayData(data));
  const dest = m.target ? join(target, m.target) : target;
  const type = m.type === 'bind' ? null : m.type;
  mount(m.source, dest, type, flags, opts.length > 0 ? opts.join(',') : null, cwd);
  if ((flags & MS.BIND) !== 0 && (flags & MS.RDONLY) !== 0) {
    // A bind mount ignores MS_RDONLY on creation: remount it read-only.
    mount(null, dest, null, flags | MS.REMOUNT | MS.BIND, null);
  }
  if (propagation !== 0) mount(null, dest, null, propagation, null);
}

/** Mounts every Mount onto target, in order; on failure what was mounted is undone. */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  let done = 0;
  try {
    for (const m of mounts) {
      mountOne(m, target);
      done++;
    }
  } catch (e) {
    for (; done > 0; done--) {
      try {
        unmount(target, 0);
      } catch {
        // best effort: report the mount error, not the rollback's
      }
    }
    throw e;
  }
}

/** Unmounts target until nothing is mounted there (stacked mounts included). */
export async function unmountAll(target: string, flags = 0): Promise<void> {
  for (let busy = 0; ; ) {
    try {
      unmount(target, flags);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'ENOENT') return;
      if (code === 'EBUSY' && busy++ < 50) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      throw e;
    }
  }
}

/** Mounts on a fresh temporary directory, runs fn on it, and always unmounts and removes it. */
export async function withTempMount<T>(
  mounts: readonly Mount[],
  fn: (root: string) => Promise<T>,
  parent = tmpdir(),
): Promise<T> {
  const root = await mkdtemp(join(parent, 'berth-mount-'));
  try {
    await mountAll(mounts, root);
    try {
      return await fn(root);
    } finally {
      await unmountAll(root);
    }
  } finally {
    await rmdir(root).catch(() => {});
  }
}
