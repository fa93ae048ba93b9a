/**
 * The tar header format (POSIX ustar + PAX, GNU long names), decoded and encoded by hand.
 *
 * Why not tar-stream: it decodes PAX values as UTF-8 strings, which corrupts binary
 * `SCHILY.xattr.*` values such as `security.capability` (a layer containing `ping` with
 * file capabilities would unpack differently from containerd). Here PAX values stay Buffers.
 */
import { InvalidArgumentError } from '@berth/api';

export const BLOCK = 512;

export type TarEntryType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'char'
  | 'block'
  | 'dir'
  | 'fifo'
  | 'contiguous'
  | 'sparse'
  | 'unknown';

export interface TarHeader {
  /** The entry name as stored (PAX `path` or GNU long name applied), not yet cleaned. */
  name: string;
  linkname: string;
  type: TarEntryType;
  /** The raw type flag character (for messages about unsupported entries). */
  typeflag: string;
  /** Permission bits plus setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Body size in bytes (0 for header-only types whatever the header says). */
  size: number;
  /** Seconds since the epoch; fractional when a PAX record carries nanoseconds. */
  mtime: number;
  atime?: number;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from `SCHILY.xattr.<name>` PAX records, values as bytes. */
  xattrs: Map<string, Buffer>;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
  '7': 'contiguous',
  S: 'sparse',
};
const TYPEFLAGS: Partial<Record<TarEntryType, string>> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

/** Types whose body is empty whatever the size field says (as Go's archive/tar reads them). */
export function isHeaderOnly(type: TarEntryType): boolean {
  return type !== 'file' && type !== 'contiguous' && type !== 'sparse' && type !== 'unknown';
}

export function typeOf(flag: string): TarEntryType {
  return TYPES[flag] ?? 'unknown';
}

/** A NUL-terminated string field. */
function cstring(buf: Buffer, start: number, len: number): string {
  let end = start;
  const max = start + len;
  while (end < max && buf[end] !== 0) end++;
  return buf.toString('utf8', start, end);
}

/** An octal or base-256 number field. */
export function parseNumeric(buf: Buffer, start: number, len: number, field: string): number {
  const first = buf[start]!;
  if (first & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit as a marker.
    if (first & 0x40) throw new InvalidArgumentError(`invalid tar header: negative ${field}`);
    let v = first & 0x3f;
    for (let i = start + 1; i < start + len; i++) {
      v = v * 256 + buf[i]!;
      if (v > Number.MAX_SAFE_INTEGER)
        throw new InvalidArgumentError(`invalid tar header: ${field} too large`);
    }
    return v;
  }
  let v = 0;
  let seen = false;
  let done = false;
  for (let i = start; i < start + len; i++) {
    const c = buf[i]!;
    if (c === 0 || c === 0x20) {
      if (seen) done = true;
      continue;
    }
    if (done || c < 0x30 || c > 0x37) {
      throw new InvalidArgumentError(
        `invalid tar header: ${field} field ${JSON.stringify(buf.toString('latin1', start, start + len))} is not octal`,
      );
    }
    seen = true;
    v = v * 8 + (c - 0x30);
  }
  return v;
}

function checksumOf(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return { unsigned, signed };
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** The fields of one 512-byte header block, before PAX and GNU long names apply. */
export interface RawHeader {
  name: string;
  linkname: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}

export function decodeBlock(block: Buffer): RawHeader {
  const sum = checksumOf(block);
  const stored = parseNumeric(block, 148, 8, 'checksum');
  if (stored !== sum.unsigned && stored !== sum.signed) {
    throw new InvalidArgumentError(
      'invalid tar header: checksum mismatch (is the layer corrupt or compressed?)',
    );
  }
  const magic = block.toString('latin1', 257, 263);
  let name = cstring(block, 0, 100);
  // Only POSIX ustar has a prefix field; GNU stores times there.
  if (magic === 'ustar\0' && block[345] !== 0) name = `${cstring(block, 345, 155)}/${name}`;
  return {
    name,
    linkname: cstring(block, 157, 100),
    typeflag: String.fromCharCode(block[156]!),
    mode: parseNumeric(block, 100, 8, 'mode') & 0o7777,
    uid: parseNumeric(block, 108, 8, 'uid'),
    gid: parseNumeric(block, 116, 8, 'gid'),
    size: parseNumeric(block, 124, 12, 'size'),
    mtime: parseNumeric(block, 136, 12, 'mtime'),
    uname: cstring(block, 265, 32),
    gname: cstring(block, 297, 32),
    devmajor: magic.startsWith('ustar') ? parseNumeric(block, 329, 8, 'devmajor') : 0,
    devminor: magic.startsWith('ustar') ? parseNumeric(block, 337, 8, 'devminor') : 0,
  };
}

/** Parses PAX records (`<len> <key>=<value>\n`); values are kept as bytes. */
export function parsePax(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < buf.length) {
    // Some writers pad the record block with NULs.
    if (buf[off] === 0) break;
    const sp = buf.indexOf(0x20, off);
    if (sp < 0 || sp - off > 20)
      throw new InvalidArgumentError('invalid PAX header: malformed record length');
    const len = Number(buf.toString('latin1', off, sp));
    if (
      !Number.isInteger(len) ||
      len <= sp - off + 1 ||
      off + len > buf.length ||
      buf[off + len - 1] !== 0x0a
    ) {
      throw new InvalidArgumentError('invalid PAX header: malformed record');
    }
    const rec = buf.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new InvalidArgumentError('invalid PAX header: record without key');
    out.set(rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}

/** A PAX decimal time (`1234567890.123456789`) as seconds. */
export function parsePaxTime(value: string, key: string): number {
  if (!/^-?\d+(\.\d+)?$/.test(value)) throw new InvalidArgumentError(`invalid PAX header: ${key}=${value}`);
  return Number(value);
}

export function parsePaxInt(value: string, key: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`invalid PAX header: ${key}=${value}`);
  const n = Number(value);
  if (!Number.isSafeInteger(n))
    throw new InvalidArgumentError(`invalid PAX header: ${key}=${value} too large`);
  return n;
}

export const XATTR_PREFIX = 'SCHILY.xattr.';

// ---- encoding ----

/** What a writer needs to describe one entry. */
export interface TarEntryInit {
  name: string;
  type: Exclude<TarEntryType, 'contiguous' | 'sparse' | 'unknown'>;
  mode: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** Seconds since the epoch (whole seconds are written, as containerd's differ truncates). */
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Map<string, Buffer> | Record<string, Buffer | string>;
  /** Extra PAX records (tests use them to craft odd archives). */
  pax?: Record<string, Buffer | string>;
}

function writeString(block: Buffer, s: string, start: number, len: number): void {
  block.write(s, start, len, 'utf8');
}

function writeOctal(block: Buffer, n: number, start: number, len: number): void {
  const s = Math.floor(n)
    .toString(8)
    .padStart(len - 1, '0');
  block.write(`${s}\0`, start, len, 'latin1');
}

function fitsOctal(n: number, len: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < 8 ** (len - 1);
}

function isAscii(s: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is not allowed in names
  return /^[\x01-\x7f]*$/.test(s);
}

/** What Go's archive/tar keeps of a string in a header field: its ASCII characters. */
function toAscii(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is dropped as Go does
  return s.replace(/[^\x01-\x7f]/gu, '');
}

/**
 * Splits a name too long for the 100-byte field into ustar prefix and name, exactly as Go's
 * archive/tar does (so a trailing `/` stays with the name), or undefined when it cannot.
 */
function splitUstar(name: string): [string, string] | undefined {
  if (name.length <= 100 || !isAscii(name)) return undefined;
  let length = name.length;
  if (length > 156) length = 156;
  else if (name[length - 1] === '/') length--;
  const i = name.lastIndexOf('/', length - 1);
  const rest = name.length - i - 1;
  if (i <= 0 || rest > 100 || rest === 0 || i > 155) return undefined;
  return [name.slice(0, i), name.slice(i + 1)];
}

/** A string field as Go's formatter fills it: cut to the field, a cut trailing `/` dropped. */
function fieldString(s: string, len: number): string {
  if (s.length <= len) return s;
  const cut = s.slice(0, len);
  return cut.endsWith('/') ? cut.replace(/\/+$/, '') : cut;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function encodeBlock(h: {
  prefix: string;
  name: string;
  linkname: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Absent in a PAX extended header, which Go leaves NUL. */
  devmajor?: number;
  devminor?: number;
}): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, h.name, 0, 100);
  writeOctal(block, h.mode, 100, 8);
  writeOctal(block, fitsOctal(h.uid, 8) ? h.uid : 0, 108, 8);
  writeOctal(block, fitsOctal(h.gid, 8) ? h.gid : 0, 116, 8);
  writeOctal(block, fitsOctal(h.size, 12) ? h.size : 0, 124, 12);
  writeOctal(block, fitsOctal(h.mtime, 12) ? h.mtime : 0, 136, 12);
  block.write(h.typeflag, 156, 1, 'latin1');
  writeString(block, h.linkname, 157, 100);
  block.write('ustar\x0000', 257, 8, 'latin1');
  if (h.devmajor !== undefined) writeOctal(block, h.devmajor, 329, 8);
  if (h.devminor !== undefined) writeOctal(block, h.devminor, 337, 8);
  writeString(block, h.prefix, 345, 155);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

/** Zero bytes that pad a body of `size` bytes to a whole block. */
export function padding(size: number): Buffer {
  const r = size % BLOCK;
  return r === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - r);
}

/** The two zero blocks that end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** Where Go's archive/tar puts the PAX extended header of `name` (path.Join(dir, "PaxHeaders.0", file)). */
function paxHeaderName(name: string): string {
  const slash = name.lastIndexOf('/');
  const dir = name.slice(0, slash + 1).replace(/\/+$/, '');
  const file = name.slice(slash + 1);
  const joined = [dir, 'PaxHeaders.0', file].filter((p) => p !== '').join('/');
  return toAscii(joined).slice(0, 100).replace(/\/+$/, '');
}

/**
 * Encodes the header blocks of one entry byte for byte as Go's archive/tar does for the
 * headers containerd's diff writer hands it (PAX format, whole-second mtime, no atime,
 * ctime or user names), so that berth and containerd give one change the same layer
 * digest: plain ustar (long names split into prefix and name) while every field fits,
 * else a PAX extended header with its records sorted by key, then a block carrying what
 * fits (ASCII, cut to the field, no prefix).
 */
export function encodeHeader(e: TarEntryInit): Buffer {
  const typeflag = TYPEFLAGS[e.type];
  if (typeflag === undefined) throw new InvalidArgumentError(`cannot write tar entry of type ${e.type}`);
  const name = e.type === 'dir' && !e.name.endsWith('/') ? `${e.name}/` : e.name;
  const linkname = e.linkname ?? '';
  const uid = e.uid ?? 0;
  const gid = e.gid ?? 0;
  const size = e.type === 'file' ? (e.size ?? 0) : 0;
  const mtime = Math.floor(e.mtime ?? 0);
  const records = new Map<string, Buffer>();
  // ustar holds the entry unless a field does not fit or there are records only PAX carries.
  let ustar = true;
  const split = splitUstar(name);
  if (name.length > 100 || !isAscii(name)) {
    records.set('path', Buffer.from(name));
    if (!split) ustar = false;
  }
  if (linkname.length > 100 || !isAscii(linkname)) {
    records.set('linkpath', Buffer.from(linkname));
    ustar = false;
  }
  for (const [key, value, len] of [
    ['uid', uid, 8],
    ['gid', gid, 8],
    ['size', size, 12],
    ['mtime', mtime, 12],
  ] as const) {
    if (!fitsOctal(value, len)) {
      records.set(key, Buffer.from(String(value)));
      ustar = false;
    }
  }
  const xattrs = e.xattrs instanceof Map ? [...e.xattrs] : Object.entries(e.xattrs ?? {});
  for (const [k, v] of xattrs) {
    records.set(XATTR_PREFIX + k, Buffer.isBuffer(v) ? v : Buffer.from(v));
    ustar = false;
  }
  for (const [k, v] of Object.entries(e.pax ?? {})) {
    if (!records.has(k)) records.set(k, Buffer.isBuffer(v) ? v : Buffer.from(v));
    ustar = false;
  }
  const fields = {
    linkname: fieldString(toAscii(linkname), 100),
    typeflag,
    mode: e.mode & 0o7777,
    uid,
    gid,
    size,
    mtime,
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
  };
  if (ustar) {
    const [prefix, short] = split ?? ['', name];
    return encodeBlock({ ...fields, prefix, name: short });
  }
  const keys = [...records.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const data = Buffer.concat(keys.map((k) => paxRecord(k, records.get(k)!)));
  const pax = encodeBlock({
    prefix: '',
    name: paxHeaderName(name),
    linkname: '',
    typeflag: 'x',
    mode: 0,
    uid: 0,
    gid: 0,
    size: data.length,
    mtime: 0,
  });
  const main = encodeBlock({ ...fields, prefix: '', name: fieldString(toAscii(name), 100) });
  return Buffer.concat([pax, data, padding(data.length), main]);
}
