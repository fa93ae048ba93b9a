import { InvalidArgumentError } from '@berth/api';
import {
  BLOCK,
  decodeBlock,
  isHeaderOnly,
  isZeroBlock,
  parsePax,
  parsePaxInt,
  parsePaxTime,
  type TarHeader,
  typeOf,
  XATTR_PREFIX,
} from './tar-format';

/** PAX and GNU long-name bodies are read whole: refuse absurd ones (Go's limit too). */
const MAX_SPECIAL_SIZE = 1 << 20;

/** Pulls exact byte counts out of an async iterable of chunks, without copying when it can. */
export class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private readonly it: AsyncIterator<Buffer>;

  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    for (;;) {
      const r = await this.it.next();
      if (r.done) return false;
      if (r.value.length === 0) continue;
      this.buf = r.value;
      this.off = 0;
      return true;
    }
  }

  /** Exactly n bytes; null at a clean end (nothing left); throws when the data stops short. */
  async readExact(n: number): Promise<Buffer | null> {
    if (this.buf.length - this.off >= n) {
      const b = this.buf.subarray(this.off, this.off + n);
      this.off += n;
      return b;
    }
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      if (this.off >= this.buf.length && !(await this.fill())) {
        if (got === 0) return null;
        throw new InvalidArgumentError('invalid tar stream: unexpected end of data');
      }
      const take = Math.min(n - got, this.buf.length - this.off);
      parts.push(this.buf.subarray(this.off, this.off + take));
      this.off += take;
      got += take;
    }
    return Buffer.concat(parts, n);
  }

  /** Yields the next n bytes in the chunks they arrive in. */
  async *chunks(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.off >= this.buf.length && !(await this.fill())) {
        throw new InvalidArgumentError('invalid tar stream: unexpected end of data');
      }
      const take = Math.min(left, this.buf.length - this.off);
      const b = this.buf.subarray(this.off, this.off + take);
      this.off += take;
      left -= take;
      yield b;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.chunks(n)) {
      // discard
    }
  }

  /** Consumes everything left (so a digest over the source covers it all). */
  async drain(): Promise<void> {
    this.off = this.buf.length;
    while (await this.fill()) this.off = this.buf.length;
  }
}

export interface TarEntry {
  header: TarHeader;
  /** The body, in chunks; read it at most once, before asking for the next entry. */
  body(): AsyncGenerator<Buffer>;
  /** The whole body in one Buffer (for small files). */
  readAll(): Promise<Buffer>;
}

/**
 * Reads a tar stream entry by entry. Bodies not consumed are skipped. After the end
 * marker the rest of the source is drained, so a digest computed over it covers the
 * whole blob (trailing zero blocks included), as containerd's diffID does.
 */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const r = new ByteReader(source);
  let pax: Map<string, Buffer> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;

  const readSpecial = async (size: number, what: string): Promise<Buffer> => {
    if (size > MAX_SPECIAL_SIZE)
      throw new InvalidArgumentError(`invalid tar stream: ${what} of ${size} bytes`);
    const data = await r.readExact(size);
    if (data === null && size > 0)
      throw new InvalidArgumentError('invalid tar stream: unexpected end of data');
    await r.skip((BLOCK - (size % BLOCK)) % BLOCK);
    return Buffer.from(data ?? Buffer.alloc(0));
  };

  for (;;) {
    const block = await r.readExact(BLOCK);
    if (block === null || isZeroBlock(block)) break;
    const raw = decodeBlock(block);
    switch (raw.typeflag) {
      case 'x':
        pax = parsePax(await readSpecial(raw.size, 'PAX header'));
        continue;
      case 'g':
        // Global PAX headers are ignored, as containerd does.
        await readSpecial(raw.size, 'PAX global header');
        continue;
      case 'L':
        longName = (await readSpecial(raw.size, 'GNU long name')).toString('utf8').replace(/\0+$/, '');
        continue;
      case 'K':
        longLink = (await readSpecial(raw.size, 'GNU long link')).toString('utf8').replace(/\0+$/, '');
        continue;
    }
    const header: TarHeader = {
      name: raw.name,
      linkname: raw.linkname,
      type: typeOf(raw.typeflag),
      typeflag: raw.typeflag,
      mode: raw.mode,
      uid: raw.uid,
      gid: raw.gid,
      size: raw.size,
      mtime: raw.mtime,
      uname: raw.uname,
      gname: raw.gname,
      devmajor: raw.devmajor,
      devminor: raw.devminor,
      xattrs: new Map(),
    };
    if (pax) {
      for (const [key, value] of pax) {
        const s = () => value.toString('utf8');
        if (key === 'path') header.name = s();
        else if (key === 'linkpath') header.linkname = s();
        else if (key === 'size') header.size = parsePaxInt(s(), key);
        else if (key === 'uid') header.uid = parsePaxInt(s(), key);
        else if (key === 'gid') header.gid = parsePaxInt(s(), key);
        else if (key === 'uname') header.uname = s();
        else if (key === 'gname') header.gname = s();
        else if (key === 'mtime') header.mtime = parsePaxTime(s(), key);
        else if (key === 'atime') header.atime = parsePaxTime(s(), key);
        else if (key.startsWith(XATTR_PREFIX)) header.xattrs.set(key.slice(XATTR_PREFIX.length), value);
        else if (key.startsWith('GNU.sparse.')) header.type = 'sparse';
      }
      pax = undefined;
    }
    if (longName !== undefined) header.name = longName;
    if (longLink !== undefined) header.linkname = longLink;
    longName = longLink = undefined;
    // Old archives mark directories with a trailing slash on a regular-file flag.
    if (raw.typeflag === '\0' && header.name.endsWith('/')) header.type = 'dir';

    const size = isHeaderOnly(header.type) ? 0 : header.size;
    let left = size;
    let consumed = false;
    const body = async function* (): AsyncGenerator<Buffer> {
      if (consumed) throw new Error(`tar entry ${header.name}: body read twice`);
      consumed = true;
      for await (const chunk of r.chunks(left)) {
        left -= chunk.length;
        yield chunk;
      }
    };
    const readAll = async (): Promise<Buffer> => {
      if (consumed) throw new Error(`tar entry ${header.name}: body read twice`);
      consumed = true;
      const data = left > 0 ? await r.readExact(left) : Buffer.alloc(0);
      if (data === null) throw new InvalidArgumentError('invalid tar stream: unexpected end of data');
      left = 0;
      return data;
    };
    yield { header, body, readAll };
    await r.skip(left + ((BLOCK - (size % BLOCK)) % BLOCK));
  }
  if (pax || longName !== undefined || longLink !== undefined) {
    throw new InvalidArgumentError('invalid tar stream: extended header without an entry');
  }
  await r.drain();
}
