import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InvalidArgumentError, removeTree, validateIdentifier } from '@berth/api';
import { unmountAll } from '@berth/sys';

/** The file in a bundle holding the OCI runtime spec. */
export const CONFIG_FILE = 'config.json';
/** Written by the shim's `start`: the address of its ttrpc socket. */
export const ADDRESS_FILE = 'address';
/** Written by berthd after `start`: which binary to run `delete` with after a restart. */
export const SHIM_BINARY_FILE = 'shim-binary-path';
/** The fifo the shim writes its log to (its stderr); berthd reads it. */
export const LOG_FILE = 'log';

const isNotFound = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** The gid that container root maps to when the spec asks for a user namespace, else 0. */
export function remappedGid(spec: Buffer): number {
  let parsed: { linux?: { gidMappings?: { containerID?: number; hostID?: number }[] } };
  try {
    parsed = JSON.parse(spec.toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`invalid OCI runtime spec: ${(err as Error).message}`);
  }
  for (const m of parsed?.linux?.gidMappings ?? []) if (m.containerID === 0) return m.hostID ?? 0;
  return 0;
}

/** Renames to a hidden sibling first, so a half-removed directory is never taken for a live one. */
async function atomicDelete(path: string): Promise<void> {
  const hidden = join(dirname(path), `.${basename(path)}`);
  try {
    await fs.rename(path, hidden);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  // The bundle may hold FIFOs and sockets: removeTree keeps require() working (@berth/api).
  await removeTree(hidden);
}

/**
 * An OCI bundle as containerd's runtime v2 lays it out: `<state>/<ns>/<id>` holds
 * config.json, rootfs/ (the shim mounts the container's rootfs there), the shim's
 * address and log, and `work`, a symlink to `<root>/<ns>/<id>` (persistent scratch
 * space for the shim).
 */
export class Bundle {
  private constructor(
    readonly id: string,
    readonly namespace: string,
    readonly path: string,
  ) {}

  get rootfs(): string {
    return join(this.path, 'rootfs');
  }

  /** Creates the bundle; on failure nothing of it is left behind. */
  static async create(
    root: string,
    state: string,
    namespace: string,
    id: string,
    spec: Buffer,
  ): Promise<Bundle> {
    try {
      validateIdentifier(id);
    } catch (err) {
      throw new InvalidArgumentError(`invalid task id ${id}: ${(err as Error).message}`, { cause: err });
    }
    const gid = remappedGid(spec);
    const bundle = new Bundle(id, namespace, join(state, namespace, id));
    const work = join(root, namespace, id);
    const made: string[] = [];
    try {
      await fs.mkdir(dirname(bundle.path), { recursive: true, mode: 0o711 });
      await fs.mkdir(bundle.path, { mode: 0o700 });
      made.push(bundle.path);
      if (gid !== 0) {
        // Container root (mapped to gid) must be able to reach the rootfs inside.
        await fs.chown(bundle.path, -1, gid);
        await fs.chmod(bundle.path, 0o710);
      }
      await fs.mkdir(dirname(work), { recursive: true, mode: 0o711 });
      await fs.mkdir(bundle.rootfs, { mode: 0o711 });
      // A work dir left by a task that died with the machine is stale: start afresh.
      await removeTree(work);
      await fs.mkdir(work, { mode: 0o711 });
      made.push(work);
      await fs.symlink(work, join(bundle.path, 'work'));
      await fs.writeFile(join(bundle.path, CONFIG_FILE), spec, { mode: 0o666 });
    } catch (err) {
      for (const p of made) await removeTree(p).catch(() => {});
      throw err;
    }
    return bundle;
  }

  /** The bundle of an existing task (after a restart). */
  static load(state: string, namespace: string, id: string): Bundle {
    return new Bundle(id, namespace, join(state, namespace, id));
  }

  /** The shim's address as it wrote it; undefined when there is none (yet). */
  async address(): Promise<string | undefined> {
    try {
      const text = (await fs.readFile(join(this.path, ADDRESS_FILE), 'utf8')).trim();
      return text === '' ? undefined : text;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async shimBinary(): Promise<string | undefined> {
    try {
      const text = (await fs.readFile(join(this.path, SHIM_BINARY_FILE), 'utf8')).trim();
      return text === '' ? undefined : text;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Records the shim's address, as `start` does, when berthd found the shim itself. */
  async setAddress(address: string): Promise<void> {
    const tmp = join(this.path, `.${ADDRESS_FILE}`);
    await fs.writeFile(tmp, address, { mode: 0o600 });
    await fs.rename(tmp, join(this.path, ADDRESS_FILE));
  }

  async setShimBinary(path: string): Promise<void> {
    await fs.writeFile(join(this.path, SHIM_BINARY_FILE), path, { mode: 0o600 });
  }

  /** True when the bundle directory exists (delete() may have run already). */
  async exists(): Promise<boolean> {
    try {
      await fs.stat(this.path);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Unmounts the rootfs, then removes the bundle and its work directory. Refuses to
   * remove a rootfs that is still mounted (that would delete the container's files).
   */
  async delete(): Promise<void> {
    let work: string | undefined;
    try {
      work = await fs.readlink(join(this.path, 'work'));
    } catch {
      work = undefined;
    }
    try {
      await unmountAll(this.rootfs);
    } catch (err) {
      throw new Error(`unmount rootfs ${this.rootfs}: ${(err as Error).message}`, { cause: err });
    }
    try {
      await fs.rmdir(this.rootfs);
    } catch (err) {
      if (!isNotFound(err)) throw new Error(`failed to remove bundle rootfs: ${(err as Error).message}`);
    }
    await atomicDelete(this.path);
    if (work !== undefined) await atomicDelete(work);
  }
}
