/**
 * Reads single files of an image's root filesystem straight from its layer blobs in the
 * daemon's content store, without unpacking or mounting anything: how a client that is not
 * root (or not on the daemon's host) resolves user names in /etc/passwd and /etc/group.
 */
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Context, Descriptor } from '@berth/api';
import type { Client } from './client';
import type { RootfsReader } from './oci';

const BLOCK = 512;
const MAX_FILE = 16 << 20;
const MAX_LINKS = 40;

interface TarEntry {
  path: string;
  /** '0' file, '1' hard link, '2' symlink, '5' directory, ... */
  type: string;
  linkname: string;
  data?: Buffer;
}

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return (nul === -1 ? raw : raw.subarray(0, nul)).toString('utf8');
}

function sizeOf(block: Buffer): number {
  const raw = block.subarray(124, 136);
  // GNU base-256 for sizes above 8 GiB.
  if ((raw[0]! & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < raw.length; i++) n = n * 256 + raw[i]!;
    return n;
  }
  const text = field(block, 124, 12).trim();
  return text ? Number.parseInt(text, 8) : 0;
}

function paxPath(data: Buffer): { path?: string; linkpath?: string } {
  const out: { path?: string; linkpath?: string } = {};
  let rest = data.toString('utf8');
  while (rest.length > 0) {
    const space = rest.indexOf(' ');
    const len = Number.parseInt(rest.slice(0, space), 10);
    if (!(len > 0)) break;
    const record = rest.slice(space + 1, len - 1);
    const eq = record.indexOf('=');
    const key = record.slice(0, eq);
    if (key === 'path') out.path = record.slice(eq + 1);
    if (key === 'linkpath') out.linkpath = record.slice(eq + 1);
    rest = rest.slice(len);
  }
  return out;
}

const normalize = (p: string): string => posix.normalize(`/${p}`).replace(/\/+$/, '') || '/';

/**
 * Walks a tar stream, calling `visit` with each entry; `wants(path)` says whose contents to
 * keep. Stops early when visit returns true.
 */
async function walkTar(
  stream: AsyncIterable<Buffer>,
  wants: (path: string) => boolean,
  visit: (e: TarEntry) => boolean,
): Promise<void> {
  let buf: Buffer = Buffer.alloc(0);
  let pending:
    | { entry: TarEntry; size: number; keep: boolean; meta?: 'pax' | 'longname' | 'longlink' }
    | undefined;
  let chunks: Buffer[] = [];
  let got = 0;
  let nextPax: { path?: string; linkpath?: string } = {};
  for await (const chunk of stream) {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (pending) {
        const padded = Math.ceil(pending.size / BLOCK) * BLOCK;
        const need = padded - got;
        const take = Math.min(need, buf.length);
        if (pending.keep || pending.meta) {
          const dataLeft = Math.max(0, pending.size - got);
          chunks.push(buf.subarray(0, Math.min(take, dataLeft)));
        }
        got += take;
        buf = buf.subarray(take);
        if (got < padded) break;
        const data = Buffer.concat(chunks);
        const { entry, meta } = pending;
        pending = undefined;
        chunks = [];
        got = 0;
        if (meta === 'pax') nextPax = paxPath(data);
        else if (meta === 'longname') nextPax.path = field(data, 0, data.length);
        else if (meta === 'longlink') nextPax.linkpath = field(data, 0, data.length);
        else {
          entry.data = data;
          if (visit(entry)) return;
        }
        continue;
      }
      if (buf.length < BLOCK) break;
      const block = buf.subarray(0, BLOCK);
      buf = buf.subarray(BLOCK);
      if (block.every((b) => b === 0)) continue;
      const type = field(block, 156, 1) || '0';
      const size = sizeOf(block);
      const magic = field(block, 257, 6);
      const prefix = magic.startsWith('ustar') ? field(block, 345, 155) : '';
      const name = field(block, 0, 100);
      const entry: TarEntry = {
        path: normalize(nextPax.path ?? (prefix ? `${prefix}/${name}` : name)),
        type,
        linkname: nextPax.linkpath ?? field(block, 157, 100),
      };
      const meta = type === 'x' ? 'pax' : type === 'L' ? 'longname' : type === 'K' ? 'longlink' : undefined;
      if (!meta) nextPax = {};
      if (type === 'g') {
        if (size > 0) pending = { entry, size, keep: false, meta: undefined };
        continue;
      }
      const keep =
        !meta && (type === '0' || type === '\0' || type === '7') && size <= MAX_FILE && wants(entry.path);
      if (size > 0 || meta) {
        pending = { entry, size, keep, ...(meta ? { meta } : {}) };
        if (size === 0) {
          pending = undefined;
          if (!meta && visit({ ...entry, data: Buffer.alloc(0) })) return;
        }
        continue;
      }
      if (visit({ ...entry, data: Buffer.alloc(0) })) return;
    }
  }
}

/** The layer's bytes, uncompressed when gzip (the magic number decides). */
async function* layerStream(client: Client, ctx: Context, desc: Descriptor): AsyncGenerator<Buffer> {
  const source = client.content.read(ctx, desc.digest);
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return;
  const head = first.value as Buffer;
  const rest = (async function* () {
    try {
      yield head;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield n.value as Buffer;
      }
    } finally {
      // Stopped early (the file was found): end the Read stream, not only our reading of it.
      await it.return?.(undefined);
    }
  })();
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = Readable.from(rest).pipe(createGunzip());
    for await (const chunk of gunzip) yield chunk as Buffer;
  } else {
    yield* rest;
  }
}

type Found =
  | { kind: 'file'; data: Buffer }
  | { kind: 'link'; target: string; hard: boolean }
  | { kind: 'gone' };

/**
 * What the top-most layer holding `path` says about it: a file, a link, or that it was
 * removed (a whiteout of it or of a parent, or an opaque parent below which it is absent).
 */
async function lookup(client: Client, ctx: Context, layers: readonly Descriptor[], path: string) {
  const dir = posix.dirname(path);
  const base = posix.basename(path);
  const ancestors: string[] = [];
  for (let d = dir; d !== '/'; d = posix.dirname(d)) ancestors.push(d);
  ancestors.push('/');
  for (let i = layers.length - 1; i >= 0; i--) {
    let found: Found | undefined;
    let opaque = false;
    await walkTar(
      layerStream(client, ctx, layers[i]!),
      (p) => p === path,
      (e) => {
        if (e.path === path) {
          if (e.type === '2') found = { kind: 'link', target: e.linkname, hard: false };
          else if (e.type === '1') found = { kind: 'link', target: e.linkname, hard: true };
          else if (e.type === '0' || e.type === '\0' || e.type === '7')
            found = { kind: 'file', data: e.data ?? Buffer.alloc(0) };
          else found = { kind: 'gone' };
          return true;
        }
        if (e.path === posix.join(dir, `.wh.${base}`)) {
          found = { kind: 'gone' };
          return true;
        }
        const eDir = posix.dirname(e.path);
        const eBase = posix.basename(e.path);
        if (eBase === '.wh..wh..opq' && ancestors.includes(eDir)) opaque = true;
        else if (eBase.startsWith('.wh.') && ancestors.includes(posix.join(eDir, eBase.slice(4)))) {
          found = { kind: 'gone' };
          return true;
        }
        return false;
      },
    );
    if (found) return found;
    if (opaque) return { kind: 'gone' } as Found;
  }
  return { kind: 'gone' } as Found;
}

/**
 * A RootfsReader over the image's layers (bottom first, as a manifest lists them): the
 * file as the unpacked image would have it, symlinks followed inside the image.
 */
export function layersReader(client: Client, ctx: Context, layers: readonly Descriptor[]): RootfsReader {
  const memo = new Map<string, Promise<Buffer | undefined>>();
  const read = async (path: string): Promise<Buffer | undefined> => {
    let current = normalize(path);
    for (let links = 0; links <= MAX_LINKS; links++) {
      const found = await lookup(client, ctx, layers, current);
      if (found.kind === 'file') return found.data;
      if (found.kind === 'gone') return undefined;
      current = found.hard
        ? normalize(found.target)
        : normalize(
            found.target.startsWith('/') ? found.target : posix.join(posix.dirname(current), found.target),
          );
    }
    throw new Error(`${path}: too many levels of symbolic links`);
  };
  return (path) => {
    const key = normalize(path);
    let p = memo.get(key);
    if (!p) {
      p = read(key);
      memo.set(key, p);
    }
    return p;
  };
}
