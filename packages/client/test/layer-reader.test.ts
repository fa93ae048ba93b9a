/**
 * layersReader reads files of an image as it would be unpacked, straight from its layer blobs:
 * upper layers win, whiteouts and opaque directories hide, links are followed in the image.
 * The layers are real (testkit's gzip tars); the content store is a map behind the one call
 * the reader makes.
 */
import type { Client } from '@berth/client';
import { layersReader, oci } from '@berth/client';
import { buildImage, dir, file, type LayerEntry, symlink, whiteout } from '@berth/testkit';

function readerOver(layers: LayerEntry[][]) {
  const image = buildImage({ layers });
  let reads = 0;
  const client = {
    content: {
      async *read(_ctx: unknown, digest: string) {
        reads++;
        const blob = image.blobs.get(digest);
        if (!blob) throw Object.assign(new Error(`content ${digest}: not found`), { code: 'ERR_NOT_FOUND' });
        // Small chunks, so tar headers and file data straddle chunk boundaries.
        for (let i = 0; i < blob.length; i += 700) yield blob.subarray(i, i + 700);
      },
    },
  } as unknown as Client;
  const reader = layersReader(
    client,
    { namespace: 'default' },
    image.layers.map((l) => l.desc),
  );
  return { reader, reads: () => reads };
}

const text = async (p: Promise<Buffer | undefined>) => (await p)?.toString();

describe('layersReader', () => {
  it('reads the top-most version of a file', async () => {
    const { reader } = readerOver([
      [file('/etc/passwd', 'root:x:0:0::/root:/bin/sh\n'), file('/etc/group', 'root:x:0:\n')],
      [file('/etc/passwd', 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n')],
    ]);
    expect(await text(reader('/etc/passwd'))).toMatch(/^app:x:1000/m);
    expect(await text(reader('etc/group'))).toBe('root:x:0:\n');
    expect(await reader('/etc/shadow')).toBeUndefined();
  });

  it('sees whiteouts of the file and of a parent, and opaque parents', async () => {
    const { reader } = readerOver([
      [file('/etc/passwd', 'lower\n'), file('/etc/group', 'lower\n'), file('/opt/app/conf', 'lower\n')],
      [
        whiteout('/etc/passwd'),
        file('/etc/.wh..wh..opq', ''),
        file('/etc/hosts', 'upper\n'),
        whiteout('/opt/app'),
      ],
    ]);
    expect(await reader('/etc/passwd')).toBeUndefined();
    // The opaque /etc hides the lower /etc/group though nothing names it.
    expect(await reader('/etc/group')).toBeUndefined();
    expect(await text(reader('/etc/hosts'))).toBe('upper\n');
    expect(await reader('/opt/app/conf')).toBeUndefined();
  });

  it('follows symlinks inside the image, relative and absolute, never onto the host', async () => {
    const { reader } = readerOver([
      [dir('/usr/lib/passwd.d'), file('/usr/lib/passwd.d/passwd', 'image-user:x:7:7::/:/bin/sh\n')],
      [symlink('/etc/passwd', '../usr/lib/passwd.d/passwd'), symlink('/etc/group', '/etc/group.real')],
      [file('/etc/group.real', 'g:x:9:\n'), symlink('/etc/hostname', '../../../../../usr/lib/os-release')],
    ]);
    expect(await text(reader('/etc/passwd'))).toBe('image-user:x:7:7::/:/bin/sh\n');
    expect(await text(reader('/etc/group'))).toBe('g:x:9:\n');
    expect(await reader('/etc/hostname')).toBeUndefined();
  });

  it('reports a symlink loop', async () => {
    const { reader } = readerOver([[symlink('/etc/a', '/etc/b'), symlink('/etc/b', '/etc/a')]]);
    await expect(reader('/etc/a')).rejects.toThrow(/too many levels of symbolic links/);
  });

  it('reads paths longer than a tar header holds', async () => {
    const long = `/opt/${'d'.repeat(80)}/${'e'.repeat(80)}/file.txt`;
    const { reader } = readerOver([[file(long, 'deep\n')]]);
    expect(await text(reader(long))).toBe('deep\n');
  });

  it('reads each file once, and resolves users for a spec without mounting anything', async () => {
    const { reader, reads } = readerOver([
      [file('/etc/passwd', 'root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n')],
      [file('/etc/group', 'root:x:0:\nweb:x:33:\nlogs:x:4:web\n')],
    ]);
    const spec = await oci.generateSpec(
      { namespace: 'default', id: 'c', rootfs: reader },
      oci.withImageConfig({ User: 'web' }),
    );
    expect(spec.process!.user).toEqual({ uid: 33, gid: 33, additionalGids: [33, 4] });
    const before = reads();
    await reader('/etc/passwd');
    expect(reads()).toBe(before);
    await expect(
      oci.generateSpec({ namespace: 'default', id: 'c', rootfs: reader }, oci.withUser('nobody')),
    ).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  it('passes a missing layer blob on as the error it is', async () => {
    const image = buildImage({ layers: [[file('/etc/passwd', 'x')]] });
    const client = {
      content: {
        // biome-ignore lint/correctness/useYield: fails before yielding, as a missing blob does
        async *read(_ctx: unknown, digest: string) {
          throw Object.assign(new Error(`content ${digest}: not found`), { code: 'ERR_NOT_FOUND' });
        },
      },
    } as unknown as Client;
    const reader = layersReader(
      client,
      {},
      image.layers.map((l) => l.desc),
    );
    await expect(reader('/etc/passwd')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });
});
