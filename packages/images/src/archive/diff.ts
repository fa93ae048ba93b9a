import type { BigIntStats } from 'node:fs';
import { createReadStream } from 'node:fs';
import { lstat, open, readlink, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { FailedPreconditionError } from '@berth/api';
import { lgetxattr, llistxattr } from '@berth/sys';
import type { TarEntryInit } from './tar-format';
import { END_OF_ARCHIVE, tarEntryChunks } from './tar-writer';
import { comparePaths, devNumbers, type WalkEntry, walkTree } from './walk';
import { isOverlayOpaque, WHITEOUT_OPAQUE, WHITEOUT_PREFIX } from './whiteouts';

export type ChangeKind = 'add' | 'modify' | 'delete' | 'unmodified';

export interface Change {
  kind: ChangeKind;
  /** Path below the root, no leading slash. */
  path: string;
  /** The upper's lstat (absent for deletions). */
  st?: BigIntStats;
}

export interface DiffOptions {
  /**
   * What `upper` is. `directory` (default): a complete tree, compared entry by entry with
   * `lower` (continuity's double walk). `overlay`: an overlayfs upper dir holding only the
   * changes; its 0/0 character devices are deletions and its opaque directories become
   * `.wh..wh..opq` markers; `lower` (the merged lower tree, optional) only tells added
   * from modified directories.
   */
  upperKind?: 'directory' | 'overlay';
  signal?: AbortSignal;
}

const CAPABILITY = 'security.capability';

function capabilityOf(path: string): Buffer | undefined {
  try {
    return lgetxattr(path, CAPABILITY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENODATA') return undefined;
    throw e;
  }
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a), open(b)]);
  try {
    const ba = Buffer.alloc(64 * 1024);
    const bb = Buffer.alloc(64 * 1024);
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, null), fb.read(bb, 0, bb.length, null)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/**
 * Whether two paths hold the same file (continuity's sameFile): same type, mode, owner,
 * device and capability; for non-directories the same size and mtime, and where both
 * mtimes lack nanoseconds (truncated by a tar round trip) the same content.
 */
async function sameFile(a: WalkEntry, b: WalkEntry): Promise<boolean> {
  if (a.st.dev === b.st.dev && a.st.ino === b.st.ino) return true;
  if (a.st.mode !== b.st.mode || a.st.uid !== b.st.uid || a.st.gid !== b.st.gid || a.st.rdev !== b.st.rdev)
    return false;
  const ca = capabilityOf(a.abs);
  const cb = capabilityOf(b.abs);
  if ((ca === undefined) !== (cb === undefined) || (ca && cb && !ca.equals(cb))) return false;
  if (a.st.isDirectory()) return true;
  if (a.st.size !== b.st.size) return false;
  const sa = a.st.mtimeNs / 1_000_000_000n;
  const sb = b.st.mtimeNs / 1_000_000_000n;
  if (sa !== sb) return false;
  const na = a.st.mtimeNs % 1_000_000_000n;
  const nb = b.st.mtimeNs % 1_000_000_000n;
  if (na === 0n && nb === 0n) {
    if (a.st.isSymbolicLink()) return (await readlink(a.abs)) === (await readlink(b.abs));
    if (a.st.size === 0n) return true;
    return sameContent(a.abs, b.abs);
  }
  return na === nb;
}

const isLinked = (st: BigIntStats) => !st.isDirectory() && st.nlink > 1n;

/** The changes from lower to upper, both complete trees, in walk order. */
async function* doubleWalk(lower: string, upper: string, signal?: AbortSignal): AsyncGenerator<Change> {
  const la = walkTree(lower, signal);
  const ua = walkTree(upper, signal);
  let l = (await la.next()).value as WalkEntry | undefined;
  let u = (await ua.next()).value as WalkEntry | undefined;
  // The prefix of a directory deleted (or replaced by a non-directory): its children go silently.
  let rmdir = '';
  while (l || u) {
    const c = !l ? 1 : !u ? -1 : comparePaths(l.rel, u.rel);
    if (c < 0) {
      const cur = l!;
      l = (await la.next()).value as WalkEntry | undefined;
      if (rmdir && cur.rel.startsWith(rmdir)) continue;
      rmdir = cur.st.isDirectory() ? `${cur.rel}/` : '';
      yield { kind: 'delete', path: cur.rel };
      continue;
    }
    if (c > 0) {
      const cur = u!;
      u = (await ua.next()).value as WalkEntry | undefined;
      rmdir = '';
      yield { kind: 'add', path: cur.rel, st: cur.st };
      continue;
    }
    const a = l!;
    const b = u!;
    l = (await la.next()).value as WalkEntry | undefined;
    u = (await ua.next()).value as WalkEntry | undefined;
    rmdir = a.st.isDirectory() && !b.st.isDirectory() ? `${a.rel}/` : '';
    if (await sameFile(a, b)) {
      if (isLinked(b.st)) yield { kind: 'unmodified', path: b.rel, st: b.st };
      continue;
    }
    yield { kind: 'modify', path: b.rel, st: b.st };
  }
}

async function* addAll(upper: string, signal?: AbortSignal): AsyncGenerator<Change> {
  for await (const e of walkTree(upper, signal)) yield { kind: 'add', path: e.rel, st: e.st };
}

/** Overlay upper dir: whiteout devices are deletions, opaque dirs get a marker (kind 'modify' + marker). */
async function* overlayWalk(
  lower: string | undefined,
  upper: string,
  signal?: AbortSignal,
): AsyncGenerator<Change & { opaque?: boolean }> {
  for await (const e of walkTree(upper, signal)) {
    const names = llistxattr(e.abs);
    const unsupported = names.find(
      (n) => n === 'trusted.overlay.redirect' || n === 'trusted.overlay.metacopy',
    );
    if (unsupported) {
      throw new FailedPreconditionError(
        `overlay upper ${e.abs}: ${unsupported} is not supported (mount without redirect_dir/metacopy)`,
      );
    }
    if (e.st.isCharacterDevice() && e.st.rdev === 0n) {
      yield { kind: 'delete', path: e.rel };
      continue;
    }
    let kind: ChangeKind = 'add';
    const opaque = e.st.isDirectory() && isOverlayOpaque(e.abs);
    if (lower !== undefined) {
      const before = await lstat(`${lower}/${e.rel}`, { bigint: true }).catch(() => undefined);
      if (before) {
        kind = 'modify';
        // A directory only copied up because something below changed is not itself a change.
        if (
          !opaque &&
          before.isDirectory() &&
          e.st.isDirectory() &&
          before.mode === e.st.mode &&
          before.mtimeNs === e.st.mtimeNs
        ) {
          continue;
        }
      }
    }
    yield { kind, path: e.rel, st: e.st, opaque };
  }
}

/** An mtime in whole seconds: the tar keeps no more (containerd truncates, it does not round). */
const seconds = (st: BigIntStats) => Number(st.mtimeNs / 1_000_000_000n);

/**
 * Turns changes into an OCI layer (containerd's ChangeWriter): deletions become `.wh.`
 * entries, parents of every change are included once, hard links within the change set are
 * kept as links, and only the `security.capability` xattr is carried (as containerd does).
 *
 * The same tree always gives the same bytes, so that two diffs of one snapshot share a
 * digest: walks are sorted, only mtime (whole seconds) is written, never atime, ctime or
 * user names, and a whiteout takes the mtime of the directory it sits in, where containerd
 * stamps the clock at the start of the diff (a diff with a deletion then changed digest
 * with every second).
 */
class ChangeWriter {
  private readonly inodeSrc = new Map<bigint, string>();
  private readonly inodeRefs = new Map<bigint, string[]>();
  private readonly addedDirs = new Set<string>();

  constructor(private readonly source: string) {}

  async *handle(c: Change & { opaque?: boolean }): AsyncGenerator<Buffer> {
    if (c.kind === 'delete') {
      const slash = c.path.lastIndexOf('/');
      const name = `${c.path.slice(0, slash + 1)}${WHITEOUT_PREFIX}${c.path.slice(slash + 1)}`;
      yield* this.includeParents(name, false);
      const dir = await stat(`${this.source}/${c.path.slice(0, slash + 1)}`, { bigint: true });
      yield* tarEntryChunks({ name, type: 'file', mode: 0, mtime: seconds(dir) });
      return;
    }
    const st = c.st!;
    if (st.isSocket()) return;
    const abs = `${this.source}/${c.path}`;
    const h: TarEntryInit = {
      name: st.isDirectory() ? `${c.path}/` : c.path,
      type: 'file',
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: seconds(st),
    };
    if (st.isDirectory()) h.type = 'dir';
    else if (st.isSymbolicLink()) {
      h.type = 'symlink';
      h.linkname = await readlink(abs);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      h.type = st.isCharacterDevice() ? 'char' : 'block';
      Object.assign(h, (({ major, minor }) => ({ devmajor: major, devminor: minor }))(devNumbers(st.rdev)));
    } else if (st.isFIFO()) h.type = 'fifo';
    else h.size = Number(st.size);

    let additional: string[] | undefined;
    if (isLinked(st)) {
      const src = this.inodeSrc.get(st.ino);
      if (src !== undefined) {
        h.type = 'link';
        h.linkname = src;
        h.size = 0;
      } else {
        if (c.kind === 'unmodified') {
          this.inodeRefs.set(st.ino, [...(this.inodeRefs.get(st.ino) ?? []), h.name]);
          return;
        }
        this.inodeSrc.set(st.ino, h.name);
        additional = this.inodeRefs.get(st.ino);
        this.inodeRefs.delete(st.ino);
      }
    } else if (c.kind === 'unmodified') {
      return;
    }

    const cap = st.isSymbolicLink() ? undefined : capabilityOf(abs);
    if (cap && cap.length > 0) h.xattrs = new Map([[CAPABILITY, cap]]);

    yield* this.includeParents(h.name, h.type === 'dir');
    if (h.type === 'file' && (h.size ?? 0) > 0) {
      yield* tarEntryChunks(h, createReadStream(abs, { highWaterMark: 256 * 1024 }));
    } else {
      yield* tarEntryChunks(h);
    }
    if (c.opaque) {
      yield* tarEntryChunks({
        name: `${c.path}/${WHITEOUT_OPAQUE}`,
        type: 'file',
        mode: 0,
        mtime: seconds(st),
      });
    }
    for (const extra of additional ?? []) {
      const link: TarEntryInit = { ...h, name: extra, type: 'link', linkname: h.name, size: 0 };
      yield* this.includeParents(extra, false);
      yield* tarEntryChunks(link);
    }
  }

  private async *includeParents(name: string, isDir: boolean): AsyncGenerator<Buffer> {
    const trimmed = name.replace(/\/+$/, '');
    const slash = trimmed.lastIndexOf('/');
    if (slash > 0) {
      const parent = trimmed.slice(0, slash);
      if (!this.addedDirs.has(parent)) {
        this.addedDirs.add(parent);
        const st = await stat(`${this.source}/${parent}`, { bigint: true });
        yield* this.handle({ kind: 'modify', path: parent, st });
      }
    }
    if (isDir) this.addedDirs.add(trimmed);
  }
}

/** The changes between two trees (see DiffOptions for what `upper` may be). */
export async function* changes(
  lower: string | undefined,
  upper: string,
  opts: DiffOptions = {},
): AsyncGenerator<Change> {
  if (opts.upperKind === 'overlay') yield* overlayWalk(lower, upper, opts.signal);
  else if (lower === undefined) yield* addAll(upper, opts.signal);
  else yield* doubleWalk(lower, upper, opts.signal);
}

async function* diffChunks(
  lower: string | undefined,
  upper: string,
  opts: DiffOptions,
): AsyncGenerator<Buffer> {
  const w = new ChangeWriter(upper);
  const src =
    opts.upperKind === 'overlay' ? overlayWalk(lower, upper, opts.signal) : changes(lower, upper, opts);
  for await (const c of src) yield* w.handle(c);
  yield END_OF_ARCHIVE;
}

/**
 * The uncompressed OCI layer (tar) that turns `lower` into `upper`; `lower` undefined means
 * an empty base. Deletions are `.wh.<name>` entries; see DiffOptions for overlay upper dirs.
 */
export function diffDirectories(lower: string | undefined, upper: string, opts: DiffOptions = {}): Readable {
  return Readable.from(diffChunks(lower, upper, opts), { objectMode: false, highWaterMark: 1 << 20 });
}
