/**
 * Stock ctr 1.6 moving images in and out of berthd: a client-side pull through Content,
 * Leases, Snapshots, Diff and Images (unpacked by default), check, push, export and
 * import; every table compared with what the same ctr prints against containerd, and
 * archives exported by one daemon imported into the other.
 */
import { join } from 'node:path';
import { chainIds } from '@berth/images';
import {
  type BuiltImage,
  buildImage,
  containerdInstalled,
  ctr,
  type Daemon,
  file,
  makeTempDir,
  pushToRegistry,
  type Registry,
  type RunResult,
  registryInstalled,
  removeDir,
  startBerthd,
  startContainerd,
  startRegistry,
} from '@berth/testkit';

const NS = 'images-ctr';
const ready = registryInstalled() && containerdInstalled() && process.getuid?.() === 0;
const suite = ready ? describe : describe.skip;
if (!ready) it.skip('needs docker-registry, containerd and root', () => {});

suite('stock ctr images commands against berthd', () => {
  let registry: Registry;
  let berthd: Daemon;
  let containerd: Daemon;
  let image: BuiltImage;
  let tmp: string;
  const ref = () => `${registry.host}/e2e/app:v1`;

  beforeAll(async () => {
    tmp = makeTempDir('berth-images-ctr-');
    [registry, berthd, containerd] = await Promise.all([startRegistry(), startBerthd(), startContainerd()]);
    image = buildImage({
      layers: ['busybox', [file('etc/motd', 'from berth\n'), file('srv/data', 'y'.repeat(200_000))]],
      config: { Cmd: ['/bin/sh'] },
      extraPlatforms: [{ os: 'linux', architecture: 'arm64', variant: 'v8' }],
    });
    await pushToRegistry(registry.url, 'e2e/app', 'v1', image);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([berthd?.dispose(), containerd?.dispose(), registry?.stop()]);
    if (tmp) removeDir(tmp);
  });

  const on = (d: Daemon, args: string[]): Promise<RunResult> => ctr(d.address, ['-n', NS, ...args]);
  const ok = async (d: Daemon, args: string[]): Promise<string> => {
    const r = await on(d, args);
    if (r.code !== 0)
      throw new Error(`ctr ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${d.logs().slice(-3000)}`);
    return r.stdout;
  };
  const both = async (args: string[]): Promise<[string, string]> =>
    Promise.all([ok(berthd, args), ok(containerd, args)]);
  const topChain = () => chainIds(image.layers.map((l) => l.diffId)).at(-1)!;

  it('pulls and unpacks an index for this host, as containerd does', async () => {
    const [b, c] = await both(['images', 'pull', '--plain-http', ref()]);
    expect(b).toContain(`unpacking linux/amd64 ${image.target.digest}`);
    expect(c).toContain(`unpacking linux/amd64 ${image.target.digest}`);
    const [checkB, checkC] = await both(['images', 'check']);
    expect(checkB).toContain('complete (3/3)');
    expect(checkB).toMatch(/true\s*$/m);
    expect(checkB).toBe(checkC);
    const [lsB, lsC] = await both(['images', 'ls']);
    expect(lsB).toBe(lsC);
    const [snB, snC] = await both(['snapshots', 'ls']);
    expect(snB).toContain(topChain());
    expect(snB).toBe(snC);
    // The pull's labels match too: gc references, distribution source, uncompressed digests.
    const [contentB, contentC] = await both(['content', 'ls', '-q']);
    expect(contentB).toBe(contentC);
    for (const l of image.layers) {
      const [infoB] = await both(['content', 'ls', `digest==${l.desc.digest}`]);
      expect(infoB).toContain(`containerd.io/uncompressed=${l.diffId}`);
    }
  });

  it('pushes a tag to the registry and pulls it back', async () => {
    const pushed = `${registry.host}/e2e/pushed:v2`;
    await ok(berthd, ['images', 'tag', ref(), pushed]);
    await ok(berthd, ['images', 'push', '--plain-http', '--platform', 'linux/amd64', pushed]);
    const res = await fetch(`${registry.url}/v2/e2e/pushed/manifests/v2`, {
      headers: { accept: image.manifest.mediaType },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    await ok(containerd, ['images', 'pull', '--plain-http', pushed]);
    expect(await ok(containerd, ['images', 'check', `name==${pushed}`])).toContain('complete (3/3)');
  });

  it('refuses to push an index whose other platforms were never pulled, as containerd', async () => {
    const [b, c] = await Promise.all([
      on(berthd, ['images', 'push', '--plain-http', ref()]),
      on(containerd, ['images', 'push', '--plain-http', ref()]),
    ]);
    expect(b.code).toBe(1);
    expect(c.code).toBe(1);
    const arm = image.manifests.find((m) => m.platform?.architecture === 'arm64')!;
    expect(b.stderr).toContain(`content digest ${arm.digest}: not found`);
    expect(c.stderr).toContain(`content digest ${arm.digest}: not found`);
  });

  it('imports into containerd what berthd exported, and the other way round', async () => {
    const fromBerthd = join(tmp, 'from-berthd.tar');
    const fromContainerd = join(tmp, 'from-containerd.tar');
    await ok(berthd, ['images', 'export', fromBerthd, ref()]);
    await ok(containerd, ['images', 'export', fromContainerd, ref()]);
    await both(['images', 'rm', '--sync', ref()]);
    // Each imports the other's archive and unpacks it.
    expect(await ok(berthd, ['images', 'import', fromContainerd])).toContain(`unpacking ${ref()}`);
    expect(await ok(containerd, ['images', 'import', fromBerthd])).toContain(`unpacking ${ref()}`);
    const [checkB, checkC] = await both(['images', 'check', `name==${ref()}`]);
    expect(checkB).toContain('complete (3/3)');
    expect(checkB).toBe(checkC);
    const [snB] = await both(['snapshots', 'ls']);
    expect(snB).toContain(topChain());
  });

  it('removes an image and, with --sync, the content only it held', async () => {
    await ok(berthd, ['images', 'rm', '--sync', ref(), `${registry.host}/e2e/pushed:v2`]);
    expect(await ok(berthd, ['images', 'ls', '-q'])).toBe('');
    expect(await ok(berthd, ['content', 'ls', '-q'])).toBe('');
    expect(await ok(berthd, ['snapshots', 'ls'])).not.toContain('sha256:');
  });
});
