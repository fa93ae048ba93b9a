/**
 * A small ustar writer for test images and archives: regular files, directories, symlinks and
 * hard links, with PAX records for names ustar cannot hold. Deterministic: the same entries give
 * the same bytes. Kept apart from @berth/images on purpose, so tests of that package's tar
 * reader are not checked against itself.
 */
export interface TarEntry {
  /** Path inside the archive, without a leading slash; directories may end with `/`. */
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  data?: Buffer;
  /** Target of a symlink or hard link. */
  linkname?: string;
}

const BLOCK = 512;
const TYPEFLAG = { file: '0', hardlink: '1', symlink: '2', dir: '5' } as const;

function octal(value: number, width: number): string {
  // width - 1 digits and a NUL, as GNU tar writes them.
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function fits(value: string, max: number): boolean {
  return Buffer.byteLength(value) <= max;
}

// ustar keeps a long path as prefix (155) + '/' + name (100); undefined when no split fits.
function splitPath(path: string): { prefix: string; name: string } | undefined {
  if (fits(path, 100)) return { prefix: '', name: path };
  for (let i = path.length - 1; i > 0; i--) {
    if (path[i] !== '/') continue;
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (fits(prefix, 155) && fits(name, 100) && name !== '') return { prefix, name };
  }
  return undefined;
}

function header(fields: {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(fields.name, 0, 100);
  h.write(octal(fields.mode & 0o7777, 8), 100);
  h.write(octal(fields.uid, 8), 108);
  h.write(octal(fields.gid, 8), 116);
  h.write(octal(fields.size, 12), 124);
  h.write(octal(fields.mtime, 12), 136);
  h.write('        ', 148); // checksum counts as spaces while it is computed
  h.write(fields.typeflag, 156);
  h.write(fields.linkname, 157, 100);
  h.write('ustar\x0000', 257);
  h.write(octal(0, 8), 329); // devmajor
  h.write(octal(0, 8), 337); // devminor
  h.write(fields.prefix, 345, 155);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

// A PAX record is "<length> <key>=<value>\n" where length counts the whole record.
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const n = Buffer.byteLength(body);
  let len = n + String(n).length;
  if (String(len).length > String(n).length) len = n + String(len).length;
  return `${len}${body}`;
}

/** The archive bytes for these entries, in order, ending with two zero blocks. */
export function writeTar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const isDir = e.type === 'dir';
    const path = isDir && !e.name.endsWith('/') ? `${e.name}/` : e.name;
    const data = e.type === 'file' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const linkname = e.linkname ?? '';
    const mtime = e.mtime ?? 0;
    let split = splitPath(path);
    const pax: string[] = [];
    if (!split) {
      pax.push(paxRecord('path', path));
      split = { prefix: '', name: path.slice(0, 100) };
    }
    if (!fits(linkname, 100)) pax.push(paxRecord('linkpath', linkname));
    if (pax.length > 0) {
      const body = Buffer.from(pax.join(''));
      parts.push(
        header({
          name: 'PaxHeader',
          prefix: '',
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: body.length,
          mtime,
          typeflag: 'x',
          linkname: '',
        }),
        body,
        padding(body.length),
      );
    }
    parts.push(
      header({
        name: split.name,
        prefix: split.prefix,
        mode: e.mode ?? (isDir ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644),
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        size: data.length,
        mtime,
        typeflag: TYPEFLAG[e.type],
        linkname: fits(linkname, 100) ? linkname : linkname.slice(0, 100),
      }),
      data,
      padding(data.length),
    );
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
