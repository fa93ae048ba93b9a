import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buildTar, readTar, type TarHeader } from '@berth/images';
import * as tarStream from 'tar-stream';
import { chunked, cleanupTempDirs, tempDir } from './helpers';

afterEach(cleanupTempDirs);

async function readAll(src: AsyncIterable<Buffer>): Promise<Array<{ h: TarHeader; data: string }>> {
  const out: Array<{ h: TarHeader; data: string }> = [];
  for await (const e of readTar(src)) out.push({ h: e.header, data: (await e.readAll()).toString('latin1') });
  return out;
}

describe('tar reader and writer', () => {
  it('round-trips every entry type, long names and binary xattrs', async () => {
    const longName = `${'d'.repeat(120)}/${'f'.repeat(120)}`;
    const veryLong = `${'x/'.repeat(150)}end`;
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0x00, 0x00, 0xc3, 0x28]);
    const tar = buildTar([
      { name: 'dir', type: 'dir', mode: 0o755, mtime: 5 },
      {
        name: 'dir/file',
        type: 'file',
        mode: 0o4755,
        uid: 1000,
        gid: 1001,
        mtime: 7,
        data: 'hello',
        xattrs: { 'security.capability': cap },
      },
      { name: longName, type: 'file', mode: 0o600, data: 'x'.repeat(1025) },
      { name: veryLong, type: 'file', mode: 0o600, data: '' },
      { name: 'link', type: 'link', mode: 0o644, linkname: 'dir/file' },
      { name: 'sym', type: 'symlink', mode: 0o777, linkname: `/${'t'.repeat(200)}` },
      { name: 'dev', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'fifo', type: 'fifo', mode: 0o644 },
      { name: 'big-ids', type: 'file', mode: 0o644, uid: 3_000_000, gid: 4_000_000, data: 'x' },
      { name: 'ünïcødé', type: 'file', mode: 0o644, data: 'u' },
    ]);
    const got = await readAll(chunked(tar, 100));
    expect(got.map((e) => [e.h.name, e.h.type])).toEqual([
      ['dir/', 'dir'],
      ['dir/file', 'file'],
      [longName, 'file'],
      [veryLong, 'file'],
      ['link', 'link'],
      ['sym', 'symlink'],
      ['dev', 'char'],
      ['fifo', 'fifo'],
      ['big-ids', 'file'],
      ['ünïcødé', 'file'],
    ]);
    const file = got[1]!;
    expect(file.data).toBe('hello');
    expect(file.h).toMatchObject({ mode: 0o4755, uid: 1000, gid: 1001, mtime: 7, size: 5 });
    expect(file.h.xattrs.get('security.capability')).toEqual(cap);
    expect(got[2]!.data).toBe('x'.repeat(1025));
    expect(got[4]!.h.linkname).toBe('dir/file');
    expect(got[5]!.h.linkname).toBe(`/${'t'.repeat(200)}`);
    expect(got[6]!.h).toMatchObject({ devmajor: 1, devminor: 3 });
    expect(got[8]!.h).toMatchObject({ uid: 3_000_000, gid: 4_000_000 });
  });

  it('reads archives written by tar-stream', async () => {
    const pack = tarStream.pack();
    pack.entry({ name: 'a', type: 'directory', mode: 0o700, mtime: new Date(9000) });
    pack.entry({ name: `a/${'n'.repeat(150)}`, mode: 0o640, uid: 7, gid: 8, mtime: new Date(9000) }, 'body');
    pack.entry({ name: 'a/s', type: 'symlink', linkname: '../x' });
    pack.finalize();
    const got = await readAll(pack as unknown as AsyncIterable<Buffer>);
    expect(got.map((e) => [e.h.name.replace(/\/$/, ''), e.h.type, e.h.mode, e.data])).toEqual([
      ['a', 'dir', 0o700, ''],
      [`a/${'n'.repeat(150)}`, 'file', 0o640, 'body'],
      ['a/s', 'symlink', 0o644, ''],
    ]);
    expect(got[1]!.h).toMatchObject({ uid: 7, gid: 8, mtime: 9 });
  });

  it('reads GNU tar archives with long names (gnu and posix formats)', async () => {
    const d = await tempDir();
    const long = 'l'.repeat(180);
    await writeFile(join(d, long), 'gnu');
    for (const format of ['gnu', 'posix']) {
      const tar = execFileSync('tar', ['-c', `--format=${format}`, '-C', d, long]);
      const got = await readAll(Readable.from([tar]));
      expect(got.map((e) => [e.h.name, e.data])).toEqual([[long, 'gnu']]);
    }
  });

  it('rejects a corrupt header and a truncated body', async () => {
    const tar = buildTar([{ name: 'f', type: 'file', mode: 0o644, data: 'x'.repeat(600) }]);
    const corrupt = Buffer.from(tar);
    corrupt[10] = 0x41;
    await expect(readAll(Readable.from([corrupt]))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(readAll(Readable.from([tar.subarray(0, 800)]))).rejects.toThrow(/unexpected end of data/);
  });

  it('rejects malformed PAX records', async () => {
    const tar = buildTar([{ name: 'f', type: 'file', mode: 0o644, pax: { size: 'many' } }]);
    await expect(readAll(Readable.from([tar]))).rejects.toThrow(/invalid PAX header: size=many/);
  });

  it('skips bodies that are not read', async () => {
    const tar = buildTar([
      { name: 'a', type: 'file', mode: 0o644, data: 'a'.repeat(3000) },
      { name: 'b', type: 'file', mode: 0o644, data: 'b' },
    ]);
    const names: string[] = [];
    for await (const e of readTar(chunked(tar, 64))) names.push(e.header.name);
    expect(names).toEqual(['a', 'b']);
  });
});
