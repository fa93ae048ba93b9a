import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { applyLayer, detectCompression, MediaTypes } from '@berth/images';
import { apply, chunked, cleanupTempDirs, layer, T0, tempDir } from './helpers';

afterEach(cleanupTempDirs);

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('applyLayer', () => {
  it('creates files, dirs, symlinks and hard links with modes and times, and returns the diffID', async () => {
    const root = await tempDir();
    const tar = layer([
      { name: 'etc/', type: 'dir', mode: 0o750, mtime: T0 + 1 },
      { name: 'etc/passwd', type: 'file', mode: 0o644, data: 'root:x:0:0\n', mtime: T0 + 2 },
      { name: 'bin/', type: 'dir', mode: 0o755 },
      { name: 'bin/sh', type: 'file', mode: 0o755, data: Buffer.alloc(700_000, 7) },
      { name: 'bin/ash', type: 'link', linkname: 'bin/sh', mode: 0o755 },
      { name: 'bin/bash', type: 'symlink', linkname: 'sh', mode: 0o777 },
      { name: './usr/lib/deep/file', type: 'file', mode: 0o600, data: 'implicit parents' },
    ]);
    const res = await apply(tar, root);
    expect(res).toEqual({ size: tar.length, digest: sha(tar), compression: 'none' });

    expect(await readFile(join(root, 'etc/passwd'), 'utf8')).toBe('root:x:0:0\n');
    const etc = await stat(join(root, 'etc'));
    expect(etc.mode & 0o7777).toBe(0o750);
    // Directory times are set after their children are written.
    expect(etc.mtimeMs).toBe((T0 + 1) * 1000);
    expect((await stat(join(root, 'etc/passwd'))).mtimeMs).toBe((T0 + 2) * 1000);
    const sh = await stat(join(root, 'bin/sh'));
    expect(sh.size).toBe(700_000);
    expect(sh.mode & 0o7777).toBe(0o755);
    expect((await stat(join(root, 'bin/ash'))).ino).toBe(sh.ino);
    expect(await readlink(join(root, 'bin/bash'))).toBe('sh');
    expect((await stat(join(root, 'usr/lib/deep'))).mode & 0o7777).toBe(0o755);
    expect((await stat(join(root, 'usr/lib/deep/file'))).mode & 0o7777).toBe(0o600);
  });

  it('decompresses gzip and zstd (binary and pure JS) to the same tree and diffID', async () => {
    const tar = layer([
      { name: 'a', type: 'file', data: 'x'.repeat(100_000) },
      { name: 'b/c', type: 'file', data: 'c' },
    ]);
    const gz = gzipSync(tar);
    const zst = execFileSync('zstd', ['-q', '-c'], { input: tar });
    expect(detectCompression(gz)).toBe('gzip');
    expect(detectCompression(zst)).toBe('zstd');
    for (const [blob, opts, compression] of [
      [gz, { mediaType: MediaTypes.ociLayerGzip }, 'gzip'],
      [gz, { mediaType: MediaTypes.dockerLayerGzip }, 'gzip'],
      [zst, { mediaType: MediaTypes.ociLayerZstd, zstd: 'binary' }, 'zstd'],
      [zst, { zstd: 'js' }, 'zstd'],
    ] as const) {
      const root = await tempDir();
      const res = await applyLayer(chunked(blob, 1000), root, opts);
      expect(res).toEqual({ size: tar.length, digest: sha(tar), compression });
      expect(await readFile(join(root, 'a'), 'utf8')).toBe('x'.repeat(100_000));
      expect(await readFile(join(root, 'b/c'), 'utf8')).toBe('c');
    }
  });

  it('refuses unknown media types and reports corrupt compressed data', async () => {
    const root = await tempDir();
    const tar = layer([{ name: 'a', type: 'file', data: 'a' }]);
    await expect(
      apply(tar, root, { mediaType: 'application/vnd.oci.image.layer.v1.tar+encrypted' }),
    ).rejects.toMatchObject({
      code: 'ERR_NOT_IMPLEMENTED',
    });
    const gz = gzipSync(tar);
    gz[gz.length - 6] ^= 0xff; // break the CRC
    await expect(applyLayer(Readable.from([gz]), root)).rejects.toThrow();
    const zst = execFileSync('zstd', ['-q', '-c'], { input: tar });
    await expect(
      applyLayer(Readable.from([zst.subarray(0, zst.length - 3)]), root, { zstd: 'binary' }),
    ).rejects.toThrow(/zstd/);
    await expect(
      applyLayer(Readable.from([zst.subarray(0, zst.length - 3)]), root, { zstd: 'js' }),
    ).rejects.toThrow();
  });

  it('treats an empty blob as an empty layer', async () => {
    const root = await tempDir();
    const res = await applyLayer(Readable.from([]), root);
    expect(res).toEqual({ size: 0, digest: sha(Buffer.alloc(0)), compression: 'none' });
    expect(await readdir(root)).toEqual([]);
  });

  it('replaces files, merges directories and replaces a directory by a file', async () => {
    const root = await tempDir();
    await mkdir(join(root, 'keep/old'), { recursive: true });
    await writeFile(join(root, 'keep/old/f'), 'old');
    await writeFile(join(root, 'file'), 'old');
    await mkdir(join(root, 'dir2file/sub'), { recursive: true });
    await apply(
      layer([
        { name: 'keep/', type: 'dir', mode: 0o700 },
        { name: 'keep/new', type: 'file', data: 'new' },
        { name: 'file', type: 'file', data: 'new' },
        { name: 'dir2file', type: 'file', data: 'now a file' },
        { name: 'dup', type: 'file', data: 'first' },
        { name: 'dup', type: 'file', data: 'second' },
      ]),
      root,
    );
    expect(await readFile(join(root, 'keep/old/f'), 'utf8')).toBe('old');
    expect(await readFile(join(root, 'keep/new'), 'utf8')).toBe('new');
    expect((await stat(join(root, 'keep'))).mode & 0o7777).toBe(0o700);
    expect(await readFile(join(root, 'file'), 'utf8')).toBe('new');
    expect(await readFile(join(root, 'dir2file'), 'utf8')).toBe('now a file');
    expect(await readFile(join(root, 'dup'), 'utf8')).toBe('second');
  });

  it('direct whiteouts delete paths; an opaque dir keeps only what the layer adds', async () => {
    const root = await tempDir();
    await mkdir(join(root, 'gone/sub'), { recursive: true });
    await writeFile(join(root, 'gone/sub/f'), '');
    await writeFile(join(root, 'file'), '');
    await mkdir(join(root, 'opq/old/deeper'), { recursive: true });
    await writeFile(join(root, 'opq/old/deeper/f'), '');
    await writeFile(join(root, 'opq/stale'), '');
    await mkdir(join(root, 'opq/kept'), { recursive: true });
    await writeFile(join(root, 'opq/kept/stale'), '');
    await apply(
      layer([
        { name: '.wh.gone', type: 'file' },
        { name: '.wh.file', type: 'file' },
        { name: '.wh.never-existed', type: 'file' },
        { name: 'opq/', type: 'dir' },
        { name: 'opq/fresh', type: 'file', data: 'fresh' },
        { name: 'opq/kept/new', type: 'file', data: 'n' },
        // out of order on purpose: the marker may follow the entries it must keep
        { name: 'opq/.wh..wh..opq', type: 'file' },
      ]),
      root,
    );
    expect((await readdir(root)).sort()).toEqual(['opq']);
    expect((await readdir(join(root, 'opq'))).sort()).toEqual(['fresh', 'kept']);
    expect(await readdir(join(root, 'opq/kept'))).toEqual(['new']);
  });

  it('strips setuid/setgid only when asked', async () => {
    const tar = layer([
      { name: 'suid', type: 'file', mode: 0o4755, data: '' },
      { name: 'sgid-dir/', type: 'dir', mode: 0o2775 },
    ]);
    const loose = await tempDir();
    await apply(tar, loose);
    expect((await stat(join(loose, 'suid'))).mode & 0o7777).toBe(0o4755);
    expect((await stat(join(loose, 'sgid-dir'))).mode & 0o7777).toBe(0o2775);
    const strict = await tempDir();
    await apply(tar, strict, { allowSetuid: false });
    expect((await stat(join(strict, 'suid'))).mode & 0o7777).toBe(0o755);
    expect((await stat(join(strict, 'sgid-dir'))).mode & 0o7777).toBe(0o775);
  });

  it('creates fifos', async () => {
    const root = await tempDir();
    await apply(layer([{ name: 'p', type: 'fifo', mode: 0o640 }]), root);
    const st = await lstat(join(root, 'p'));
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o640);
  });

  it('follows existing symlinked parents inside the target', async () => {
    const root = await tempDir();
    await mkdir(join(root, 'usr/lib'), { recursive: true });
    await symlink('usr/lib', join(root, 'lib'));
    await apply(layer([{ name: 'lib/libc.so', type: 'file', data: 'c' }]), root);
    expect(await readFile(join(root, 'usr/lib/libc.so'), 'utf8')).toBe('c');
    expect((await lstat(join(root, 'lib'))).isSymbolicLink()).toBe(true);
  });

  it('stops at the first bad entry, naming it', async () => {
    const root = await tempDir();
    const tar = layer([
      { name: 'ok', type: 'file', data: 'ok' },
      { name: 'ok/child', type: 'file', data: 'x' },
    ]);
    await expect(apply(tar, root)).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: expect.stringContaining('"ok/child"'),
    });
  });

  it('fails on a target that is not a directory', async () => {
    const root = await tempDir();
    await writeFile(join(root, 'f'), '');
    await expect(apply(layer([]), join(root, 'f'))).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
    });
    await expect(apply(layer([]), join(root, 'missing'))).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
    });
  });

  it('can be canceled', async () => {
    const root = await tempDir();
    const ac = new AbortController();
    ac.abort();
    await expect(
      apply(layer([{ name: 'a', type: 'file' }]), root, { signal: ac.signal }),
    ).rejects.toMatchObject({
      code: 'ERR_CANCELED',
    });
  });
});
