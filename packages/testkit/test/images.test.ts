import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  type BuiltImage,
  buildImage,
  busyboxApplets,
  busyboxLayer,
  dir,
  file,
  layerTar,
  MediaTypes,
  ociLayoutFiles,
  sha256,
  symlink,
  whiteout,
  writeDockerArchive,
  writeOciLayout,
  writeTar,
} from '@berth/testkit';

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'testkit-images-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

// GNU tar is the independent reader here.
function gnuList(tar: Buffer): string[] {
  const path = join(tmp, `list-${Math.random()}.tar`);
  writeFileSync(path, tar);
  return execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', path]).toString().trim().split('\n');
}

function gnuRead(tar: Buffer, member: string): string {
  const path = join(tmp, `read-${Math.random()}.tar`);
  writeFileSync(path, tar);
  return execFileSync('tar', ['-xOf', path, member]).toString();
}

const blobJson = (img: BuiltImage, digest: string) => JSON.parse(img.blobs.get(digest)!.toString());

describe('layers', () => {
  it('busybox layer: the binary, an applet symlink each, passwd, group, a sticky /tmp', () => {
    const tar = layerTar(busyboxLayer());
    expect(buildImage({ layers: ['busybox'] }).layers[0]?.tar.equals(tar)).toBe(true);
    const lines = gnuList(tar);
    expect(lines.find((l) => l.endsWith(' bin/busybox'))).toMatch(/^-rwxr-xr-x 0\/0 +\d+ 2020-09-13/);
    expect(lines.find((l) => l.includes(' bin/sh '))).toMatch(/^lrwxrwxrwx 0\/0 .* bin\/sh -> busybox$/);
    expect(lines.find((l) => l.endsWith(' tmp/'))).toMatch(/^drwxrwxrwt /);
    expect(lines.find((l) => l.endsWith(' root/'))).toMatch(/^drwx------ /);
    expect(lines.filter((l) => l.startsWith('l'))).toHaveLength(busyboxApplets().length);
    expect(busyboxApplets()).toEqual(expect.arrayContaining(['sh', 'echo', 'id', 'cat']));
    expect(gnuRead(tar, 'etc/passwd')).toMatch(/^root:x:0:0:.*\nnobody:x:65534:65534:/);
    expect(gnuRead(tar, 'etc/group')).toContain('nobody:x:65534:');
  });

  it('adds missing parents, keeps modes and owners, and writes links and whiteouts', () => {
    const tar = layerTar([
      file('/usr/local/share/hello.txt', 'hello\n', 0o600),
      { path: 'srv/owned', content: 'x', uid: 1000, gid: 100 },
      symlink('/usr/local/link', '../share'),
      { path: 'usr/local/hard', type: 'hardlink', target: '/usr/local/share/hello.txt' },
      dir('/var/empty', 0o711),
      whiteout('/etc/gone'),
    ]);
    const lines = gnuList(tar);
    const names = lines.map((l) => l.split(/\s+/).slice(5).join(' '));
    expect(names).toEqual([
      'usr/',
      'usr/local/',
      'usr/local/share/',
      'usr/local/share/hello.txt',
      'srv/',
      'srv/owned',
      'usr/local/link -> ../share',
      'usr/local/hard link to usr/local/share/hello.txt',
      'var/',
      'var/empty/',
      'etc/',
      'etc/.wh.gone',
    ]);
    expect(lines[3]).toMatch(/^-rw------- 0\/0 +6 /);
    expect(lines[5]).toMatch(/^-rw-r--r-- 1000\/100 /);
    expect(lines[9]).toMatch(/^drwx--x--x /);
    expect(gnuRead(tar, 'usr/local/share/hello.txt')).toBe('hello\n');
  });

  it('stores long paths and link targets through PAX records', () => {
    const deep = `${'d'.repeat(120)}/${'e'.repeat(120)}/${'f'.repeat(90)}`;
    const target = `/${'t'.repeat(150)}`;
    const tar = writeTar([
      { name: deep, type: 'file', data: Buffer.from('deep') },
      { name: 'x'.repeat(130), type: 'file', data: Buffer.from('flat') },
      { name: 'l', type: 'symlink', linkname: target },
    ]);
    const lines = gnuList(tar);
    expect(lines[0]).toMatch(new RegExp(`${deep}$`));
    expect(lines[1]).toMatch(new RegExp(`${'x'.repeat(130)}$`));
    expect(lines[2]).toMatch(new RegExp(`l -> ${target}$`));
    expect(gnuRead(tar, deep)).toBe('deep');
    expect(gnuRead(tar, 'x'.repeat(130))).toBe('flat');
  });

  it('refuses links without a target and empty paths', () => {
    expect(() => layerTar([{ path: 'a', type: 'symlink' }])).toThrow(/"a": a symlink needs a target/);
    expect(() => layerTar([{ path: '/', content: 'x' }])).toThrow(/empty path/);
  });
});

describe('buildImage', () => {
  const config = {
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: ['echo hi'],
    Env: ['PATH=/bin'],
    WorkingDir: '/tmp',
    User: 'nobody',
  };

  it('is deterministic: the same input gives the same digests', () => {
    const a = buildImage({ layers: ['busybox', [file('a', '1')]], config });
    const b = buildImage({ layers: ['busybox', [file('a', '1')]], config });
    expect(b.target).toEqual(a.target);
    expect([...b.blobs.keys()]).toEqual([...a.blobs.keys()]);
    const c = buildImage({ layers: ['busybox', [file('a', '2')]], config });
    expect(c.target.digest).not.toBe(a.target.digest);
  });

  it('links manifest, config and gzip layers by digest, with diffIDs of the uncompressed tars', () => {
    const img = buildImage({ layers: ['busybox', [file('etc/motd', 'hi\n')]], config });
    for (const [digest, data] of img.blobs) expect(sha256(data)).toBe(digest);
    const manifest = blobJson(img, img.manifest.digest);
    expect(manifest).toMatchObject({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: img.config,
    });
    expect(manifest.layers).toEqual(img.layers.map((l) => l.desc));
    const cfg = blobJson(img, img.config.digest);
    expect(cfg).toMatchObject({ os: 'linux', architecture: 'amd64', config });
    expect(cfg.rootfs).toEqual({
      type: 'layers',
      diff_ids: img.layers.map((l) => sha256(gunzipSync(img.blobs.get(l.desc.digest)!))),
    });
    expect(img.layers.map((l) => l.desc.mediaType)).toEqual([
      MediaTypes.ociLayerGzip,
      MediaTypes.ociLayerGzip,
    ]);
    expect(img.target).toBe(img.manifest);
    expect(img.index).toBeUndefined();
  });

  it('uses Docker schema 2 media types when asked', () => {
    const img = buildImage({
      layers: [[file('a', '1')]],
      mediaTypes: 'docker',
      extraPlatforms: [{ os: 'linux', architecture: 's390x' }],
    });
    expect(img.manifest.mediaType).toBe(MediaTypes.dockerManifest);
    expect(img.config.mediaType).toBe(MediaTypes.dockerConfig);
    expect(img.layers[0]?.desc.mediaType).toBe(MediaTypes.dockerLayerGzip);
    expect(img.target.mediaType).toBe(MediaTypes.dockerManifestList);
  });

  it('puts the image in an index with complete images for fake platforms', () => {
    const extra = [
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
      { os: 'linux', architecture: 'ppc64le' },
    ];
    const img = buildImage({
      layers: [[file('a', '1')]],
      platform: { os: 'linux', architecture: 'amd64' },
      extraPlatforms: extra,
    });
    const index = blobJson(img, img.target.digest);
    expect(img.index).toBe(img.target);
    expect(index.mediaType).toBe(MediaTypes.ociIndex);
    expect(index.manifests.map((m: { platform: unknown }) => m.platform)).toEqual([
      { os: 'linux', architecture: 'amd64' },
      ...extra,
    ]);
    for (const m of index.manifests.slice(1)) {
      const manifest = blobJson(img, m.digest);
      expect(blobJson(img, manifest.config.digest)).toMatchObject({ architecture: m.platform.architecture });
      expect(img.blobs.has(manifest.layers[0].digest)).toBe(true);
    }
    expect(() =>
      buildImage({
        layers: [],
        platform: { os: 'linux', architecture: 'amd64' },
        extraPlatforms: [{ os: 'linux', architecture: 'amd64' }],
      }),
    ).toThrow(/extra platform linux\/amd64 is the image's own/);
  });
});

describe('writers', () => {
  const img = buildImage({
    layers: [[file('bin/tool', 'x', 0o755)], [file('etc/conf', 'y')]],
    config: { Cmd: ['/bin/tool'] },
  });

  it('OCI layout: oci-layout, an index naming the image for containerd, and every blob', () => {
    writeOciLayout(join(tmp, 'layout'), img, 'berth.test/tool:v1');
    expect(JSON.parse(readFileSync(join(tmp, 'layout', 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const index = JSON.parse(readFileSync(join(tmp, 'layout', 'index.json'), 'utf8'));
    expect(index.manifests).toEqual([
      {
        ...img.target,
        annotations: {
          'io.containerd.image.name': 'berth.test/tool:v1',
          'org.opencontainers.image.ref.name': 'v1',
        },
      },
    ]);
    const blobs = readdirSync(join(tmp, 'layout', 'blobs', 'sha256'));
    expect(blobs.sort()).toEqual([...img.blobs.keys()].map((d) => d.slice(7)).sort());
    for (const b of blobs)
      expect(sha256(readFileSync(join(tmp, 'layout', 'blobs', 'sha256', b)))).toBe(`sha256:${b}`);
  });

  it('OCI layout tar holds the same files', () => {
    const tarPath = join(tmp, 'image.tar');
    writeOciLayout(tarPath, img, 'localhost:5000/tool');
    const tar = readFileSync(tarPath);
    const names = gnuList(tar).map((l) => l.split(/\s+/).at(-1));
    expect(names).toEqual(expect.arrayContaining(['oci-layout', 'index.json', 'blobs/', 'blobs/sha256/']));
    const index = JSON.parse(gnuRead(tar, 'index.json'));
    expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe('latest');
    expect(ociLayoutFiles(img, 'x').size).toBe(img.blobs.size + 2);
  });

  it('docker archive: manifest.json with RepoTags, config and uncompressed layers matching the diffIDs', () => {
    const tarPath = join(tmp, 'docker.tar');
    writeDockerArchive(tarPath, img, 'tool:v2');
    const tar = readFileSync(tarPath);
    const [manifest] = JSON.parse(gnuRead(tar, 'manifest.json'));
    expect(manifest.RepoTags).toEqual(['tool:v2']);
    expect(sha256(gnuRead(tar, manifest.Config))).toBe(img.config.digest);
    expect(manifest.Layers).toHaveLength(2);
    manifest.Layers.forEach((layer: string, i: number) => {
      const path = join(tmp, `l${i}.tar`);
      writeFileSync(path, tar);
      const data = execFileSync('tar', ['-xOf', path, layer]);
      expect(sha256(data)).toBe(img.layers[i]?.diffId);
    });
    expect(JSON.parse(gnuRead(tar, 'repositories'))).toEqual({
      tool: { v2: img.layers[1]?.diffId.slice(7) },
    });
  });
});
