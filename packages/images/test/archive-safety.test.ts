import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildTar } from '@berth/images';
import { apply, cleanupTempDirs, entries, layer, tempDir } from './helpers';

afterEach(cleanupTempDirs);

/** A target and, beside it, an `outside` directory no layer may touch. */
async function setup(): Promise<{ root: string; outside: string; untouched: () => Promise<void> }> {
  const base = await tempDir();
  const root = join(base, 'root');
  const outside = join(base, 'outside');
  await mkdir(root);
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'secret');
  const untouched = async () => {
    expect(await readdir(outside)).toEqual(['secret']);
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret');
    expect((await stat(join(outside, 'secret'))).nlink).toBe(1);
    expect(await readdir(base)).toEqual(['outside', 'root']);
  };
  return { root, outside, untouched };
}

/** Rewrites the type flag of the first header (and its checksum) to craft odd entries. */
function withTypeflag(tar: Buffer, flag: string): Buffer {
  const out = Buffer.from(tar);
  out.write(flag, 156, 1, 'latin1');
  out.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[i]!;
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return out;
}

describe('layer apply never writes outside the target', () => {
  it('refuses names that climb out with ..', async () => {
    const { root, untouched } = await setup();
    for (const name of ['../outside/secret', 'a/../../outside/pwn', '../../../../../../tmp/pwn']) {
      await expect(apply(layer([{ name, type: 'file', data: 'pwn' }]), root)).rejects.toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
        message: expect.stringContaining('escapes the layer root'),
      });
    }
    // ... also when the name arrives in a PAX record
    const pax = layer([{ name: 'innocent', type: 'file', data: 'pwn', pax: { path: '../outside/pwn' } }]);
    await expect(apply(pax, root)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await untouched();
  });

  it('makes absolute names relative to the target', async () => {
    const { root, untouched } = await setup();
    await apply(layer([{ name: '/etc/abs', type: 'file', data: 'in' }]), root);
    expect(await readFile(join(root, 'etc/abs'), 'utf8')).toBe('in');
    await untouched();
  });

  it('resolves symlinked parents inside the target (absolute and relative links)', async () => {
    const { root, outside, untouched } = await setup();
    await apply(
      layer([
        { name: 'abs', type: 'symlink', linkname: outside },
        { name: 'abs/pwn', type: 'file', data: 'x' },
        { name: 'rel', type: 'symlink', linkname: '../../../../../../..' },
        { name: 'rel/pwn2', type: 'file', data: 'y' },
        { name: 'abs/.wh.secret', type: 'file' },
        { name: 'rel/.wh..wh..opq', type: 'file' },
      ]),
      root,
    );
    expect(await readFile(join(root, outside, 'pwn'), 'utf8')).toBe('x');
    await untouched();
  });

  it('replaces a symlink to the outside instead of writing through it', async () => {
    const { root, outside, untouched } = await setup();
    await apply(
      layer([
        { name: 's', type: 'symlink', linkname: join(outside, 'secret') },
        { name: 's', type: 'file', data: 'pwn' },
        { name: 'd', type: 'symlink', linkname: outside },
        { name: 'd', type: 'dir', mode: 0o700 },
      ]),
      root,
    );
    expect(await readFile(join(root, 's'), 'utf8')).toBe('pwn');
    expect((await lstat(join(root, 'd'))).isDirectory()).toBe(true);
    await untouched();
  });

  it('a directory replaced by a symlink and then written below does not escape', async () => {
    const { root, outside, untouched } = await setup();
    await apply(
      layer([
        { name: 'd/', type: 'dir' },
        { name: 'd/f', type: 'file', data: 'before' },
        { name: 'd', type: 'symlink', linkname: outside },
        { name: 'd/secret', type: 'file', data: 'pwn' },
        { name: 'd/new/deep', type: 'file', data: 'pwn' },
      ]),
      root,
    );
    expect(await readlink(join(root, 'd'))).toBe(outside);
    expect(await readFile(join(root, outside, 'secret'), 'utf8')).toBe('pwn');
    await untouched();
  });

  it('refuses symlink loops', async () => {
    const { root, untouched } = await setup();
    const tar = layer([
      { name: 'a', type: 'symlink', linkname: 'b' },
      { name: 'b', type: 'symlink', linkname: 'a' },
      { name: 'a/x', type: 'file' },
    ]);
    await expect(apply(tar, root)).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: expect.stringContaining('too many levels of symbolic links'),
    });
    await untouched();
  });

  it('refuses hard links to the outside', async () => {
    const { root, outside, untouched } = await setup();
    await expect(
      apply(layer([{ name: 'h', type: 'link', linkname: '../outside/secret' }]), root),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('"h"'),
    });
    // through a symlink: the target resolves inside the root, where it does not exist
    const viaLink = layer([
      { name: 'out', type: 'symlink', linkname: outside },
      { name: 'h', type: 'link', linkname: 'out/secret' },
    ]);
    await expect(apply(viaLink, root)).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: expect.stringContaining('does not exist'),
    });
    // to a symlink pointing out: the link is to the symlink itself, never its target
    await apply(
      layer([
        { name: 's', type: 'symlink', linkname: join(outside, 'secret') },
        { name: 'h2', type: 'link', linkname: 's' },
      ]),
      root,
    );
    expect((await lstat(join(root, 'h2'))).isSymbolicLink()).toBe(true);
    await expect(apply(layer([{ name: 'h3', type: 'link', linkname: 'out' }]), root)).resolves.toBeDefined();
    await expect(apply(layer([{ name: 'h4', type: 'link', linkname: '.' }]), root)).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await untouched();
  });

  it('refuses device nodes when devices are not allowed', async () => {
    const { root, untouched } = await setup();
    for (const type of ['char', 'block'] as const) {
      const tar = layer([{ name: `dev/${type}`, type, mode: 0o666, devmajor: 8, devminor: 0 }]);
      await expect(apply(tar, root, { allowDevices: false })).rejects.toMatchObject({
        code: 'ERR_FAILED_PRECONDITION',
        message: `layer entry "dev/${type}": device nodes are not permitted (allowDevices is off)`,
      });
    }
    expect(await readdir(root)).toEqual([]);
    await untouched();
  });

  it('refuses overly long names', async () => {
    const { root } = await setup();
    await expect(apply(layer([{ name: 'n'.repeat(256), type: 'file' }]), root)).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('longer than 255 bytes'),
    });
    await expect(
      apply(layer([{ name: `${'d'.repeat(200)}/`.repeat(21), type: 'dir' }]), root),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('path longer than'),
    });
  });

  it('refuses entry types it cannot represent', async () => {
    const { root } = await setup();
    const file = buildTar(entries([{ name: 'weird', type: 'file', data: 'x' }]));
    for (const flag of ['7', 'S', 'V', 'Z']) {
      await expect(apply(withTypeflag(file, flag), root)).rejects.toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
        message: expect.stringMatching(/^layer entry "weird": unsupported tar entry type/),
      });
    }
  });

  it('refuses whiteouts that name the directory itself or its parent', async () => {
    const { root, untouched } = await setup();
    for (const name of ['.wh.', 'sub/.wh..', 'sub/.wh...']) {
      await expect(apply(layer([{ name, type: 'file' }]), root)).rejects.toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
      });
    }
    await untouched();
  });
});
