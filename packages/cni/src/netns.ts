import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, open, readFile, statfs, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { AlreadyExistsError, InvalidArgumentError, UnknownError } from '@berth/api';

const run = promisify(execFile);
const NSFS_MAGIC = 0x6e736673;

/**
 * Makes a new network namespace and pins it at `dir/name` by a bind mount, so it outlives
 * every process in it (a pod's netns exists before its pause container and after it).
 * util-linux `unshare --net=FILE true` does the unshare and the bind mount from its own
 * process, so no native code runs here. `dir` is made a shared mount point first, as
 * `ip netns add` does with /run/netns: a pin made later still shows in mount namespaces
 * that receive propagation from `dir`.
 */
export async function createNetns(dir: string, name: string): Promise<string> {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0'))
    throw new InvalidArgumentError(`invalid network namespace name "${name}"`);
  const abs = resolve(dir);
  await mkdir(abs, { recursive: true, mode: 0o755 });
  await makeShared(abs);
  const path = join(abs, name);
  try {
    const fh = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_RDONLY, 0o444);
    await fh.close();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST')
      throw new AlreadyExistsError(`network namespace ${path}: already exists`, { cause: e });
    throw e;
  }
  try {
    await run('unshare', [`--net=${path}`, 'true']);
  } catch (e) {
    await unlink(path).catch(() => {});
    throw new UnknownError(`create network namespace ${path}: ${stderrOf(e)}`, { cause: e });
  }
  return path;
}

/** Unmounts the pin and removes the file; a path that is gone or never mounted is fine. */
export async function removeNetns(path: string): Promise<void> {
  const abs = resolve(path);
  // a path pinned twice has two mounts stacked; each umount takes one
  for (let i = 0; i < 16 && (await mountedAt(abs)); i++) {
    try {
      await run('umount', ['--lazy', abs]);
    } catch (e) {
      if (await mountedAt(abs))
        throw new UnknownError(`unmount network namespace ${abs}: ${stderrOf(e)}`, { cause: e });
    }
  }
  try {
    await unlink(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * Undoes what createNetns did to `dir` (its bind mount onto itself) once no namespace is
 * pinned in it, so a daemon that keeps its pins under its own state directory leaves no mount
 * behind when its last pod is gone. A directory still holding pins is left as it is. Only for
 * a directory of the caller's own: a shared one such as /run/netns belongs to `ip netns` too.
 * Returns whether the directory is free of mounts now.
 */
export async function releaseNetnsDir(dir: string): Promise<boolean> {
  const abs = resolve(dir);
  if ((await readMountInfo()).some((m) => m.mountPoint.startsWith(`${abs}/`))) return false;
  for (let i = 0; i < 16 && (await mountedAt(abs)); i++) {
    try {
      await run('umount', [abs]);
    } catch (e) {
      if (await mountedAt(abs)) throw new UnknownError(`unmount ${abs}: ${stderrOf(e)}`, { cause: e });
    }
  }
  return true;
}

/** Whether `path` is a network namespace a plugin can enter (a pinned file or /proc/<pid>/ns/net). */
export async function netnsExists(path: string): Promise<boolean> {
  if (!path) return false;
  try {
    // statfs follows the /proc magic link too; only nsfs answers with NSFS_MAGIC
    return Number((await statfs(path)).type) === NSFS_MAGIC;
  } catch {
    return false;
  }
}

// two creates in one dir at once must not both bind-mount it onto itself
let sharing: Promise<unknown> = Promise.resolve();
function makeShared(dir: string): Promise<void> {
  const next = sharing.then(() => makeSharedNow(dir));
  sharing = next.catch(() => {});
  return next;
}

async function makeSharedNow(dir: string): Promise<void> {
  const info = await readMountInfo();
  const self = info.find((m) => m.mountPoint === dir);
  if (self?.shared) return;
  if (!self) await run('mount', ['--bind', dir, dir]);
  await run('mount', ['--make-shared', dir]);
}

async function mountedAt(path: string): Promise<boolean> {
  return (await readMountInfo()).some((m) => m.mountPoint === path);
}

interface MountInfo {
  mountPoint: string;
  shared: boolean;
}

async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      return {
        // the kernel escapes space, tab, newline and backslash as \ooo
        mountPoint: f[4]!.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8))),
        shared: f.slice(6, sep).some((o) => o.startsWith('shared:')),
      };
    });
}

function stderrOf(e: unknown): string {
  const s = (e as { stderr?: string }).stderr;
  return s?.trim() || (e as Error).message;
}
