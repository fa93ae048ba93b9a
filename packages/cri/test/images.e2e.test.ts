/**
 * The CRI ImageService of berthd driven by stock crictl, next to containerd 1.6's CRI on the
 * same registry: pulls by every spelling, the image records `ctr -n k8s.io images ls` shows,
 * `crictl images`/`inspecti` answers, removal, ImageFsInfo, credentials and error paths.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@berth/client';
import {
  type BuiltImage,
  buildImage,
  CRICTL,
  type CriDaemon,
  containerdInstalled,
  ctr,
  type Daemon,
  file,
  pushToRegistry,
  type Registry,
  registryInstalled,
  crictl as runCrictl,
  startCriDaemon,
  startRegistry,
} from '@berth/testkit';

const ready = registryInstalled() && existsSync(CRICTL) && process.getuid?.() === 0;
const suite = ready ? describe : describe.skip;
if (!ready) it.skip('needs docker-registry, crictl and root', () => {});

interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: string;
  uid: { value: string } | null;
  username: string;
}

suite('CRI ImageService through crictl', () => {
  let registry: Registry;
  let privateRegistry: Registry;
  let berthd: Daemon;
  let containerd: Daemon | undefined;
  let fixtures: CriDaemon[] = [];
  let app: BuiltImage;
  let named: BuiltImage;
  let indexed: BuiltImage;
  const reg = () => registry.host;

  beforeAll(async () => {
    [registry, privateRegistry] = await Promise.all([
      startRegistry(),
      startRegistry({ htpasswd: { alice: 's3cret:x' } }),
    ]);
    app = buildImage({
      layers: ['busybox', [file('etc/app', 'app\n')]],
      config: { Cmd: ['sh'], User: '1003:1004' },
    });
    named = buildImage({
      layers: ['busybox', [file('etc/named', 'named\n')]],
      config: { Cmd: ['sh'], User: 'www-data:1004', Env: ['A=1'] },
    });
    indexed = buildImage({
      layers: ['busybox', [file('etc/indexed', 'i\n')]],
      config: { Cmd: ['sh'] },
      extraPlatforms: [{ os: 'linux', architecture: 'arm64', variant: 'v8' }],
    });
    await pushToRegistry(registry.url, 'e2e/app', 'v1', app);
    await pushToRegistry(registry.url, 'e2e/app', 'v2', app);
    await pushToRegistry(registry.url, 'e2e/app', 'latest', app);
    await pushToRegistry(registry.url, 'e2e/named', 'v1', named);
    await pushToRegistry(registry.url, 'e2e/indexed', 'v1', indexed);
    await pushToRegistry(privateRegistry.url, 'e2e/private', 'v1', app, {
      username: 'alice',
      password: 's3cret:x',
    });
    // the same CRI config for both, each on its own directory
    const start = (daemon: 'berthd' | 'containerd') =>
      startCriDaemon({
        name: `images-${daemon}`,
        daemon,
        registry,
        plainHttp: [privateRegistry.host],
        extraConfig: '[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"',
      }).then((f) => {
        fixtures.push(f);
        return f.berthd;
      });
    berthd = await start('berthd');
    if (containerdInstalled()) containerd = await start('containerd');
  }, 180_000);

  afterAll(async () => {
    for (const f of fixtures) await f.stop();
    fixtures = [];
    await Promise.all([registry?.stop(), privateRegistry?.stop()]);
  });

  const daemons = (): Array<[string, Daemon]> =>
    containerd
      ? [
          ['berthd', berthd],
          ['containerd', containerd],
        ]
      : [['berthd', berthd]];

  const crictl = (d: Daemon, args: string[]) => runCrictl(d.address, args);
  const ok = async (d: Daemon, args: string[]): Promise<string> => {
    const r = await crictl(d, args);
    if (r.code !== 0)
      throw new Error(`crictl ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${d.logs().slice(-3000)}`);
    return r.stdout;
  };
  /** One ImageService call over gRPC (what crictl cannot send: RemoveImage of an absent image). */
  const imageCall = (d: Daemon, method: string, req: object): Promise<Record<string, unknown>> => {
    const client = connect(d.address);
    const stub = client.stubFor('runtime.v1.ImageService') as unknown as Record<
      string,
      (r: object, cb: (err: Error | null, res: Record<string, unknown>) => void) => void
    >;
    return new Promise((resolve, reject) => {
      stub[method]!.call(stub, req, (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res);
      });
    });
  };
  const images = async (d: Daemon): Promise<CriImage[]> =>
    (JSON.parse(await ok(d, ['images', '-o', 'json'])).images as CriImage[]).sort((a, b) =>
      a.id < b.id ? -1 : 1,
    );
  const inspect = async (
    d: Daemon,
    ref: string,
  ): Promise<{ status: CriImage; info: Record<string, unknown> }> => {
    const doc = JSON.parse(await ok(d, ['inspecti', '-o', 'json', ref]));
    return { status: doc.status, info: doc.info };
  };
  /** `ctr -n k8s.io images ls` as name → [target digest, labels]. */
  const records = async (d: Daemon): Promise<Map<string, string[]>> => {
    const r = await ctr(d.address, ['-n', 'k8s.io', 'images', 'ls']);
    if (r.code !== 0) throw new Error(`ctr images ls: ${r.stderr}`);
    const out = new Map<string, string[]>();
    for (const line of r.stdout.trim().split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      out.set(f[0]!, [f[2]!, f[f.length - 1]!]);
    }
    return out;
  };

  it('pulls by tag, short name and second tag: one image, its tag, repo digest and id records', async () => {
    for (const [, d] of daemons()) {
      const pulled = await ok(d, ['pull', `${reg()}/e2e/app:v1`]);
      expect(pulled).toContain(`Image is up to date for ${app.config.digest}`);
      await ok(d, ['pull', `${reg()}/e2e/app`]);
      await ok(d, ['pull', `${reg()}/e2e/app:v2`]);
    }
    const repo = `${reg()}/e2e/app`;
    const want = new Map([
      [`${repo}:latest`, [app.target.digest, 'io.cri-containerd.image=managed']],
      [`${repo}:v1`, [app.target.digest, 'io.cri-containerd.image=managed']],
      [`${repo}:v2`, [app.target.digest, 'io.cri-containerd.image=managed']],
      [`${repo}@${app.target.digest}`, [app.target.digest, 'io.cri-containerd.image=managed']],
      [app.config.digest, [app.target.digest, 'io.cri-containerd.image=managed']],
    ]);
    for (const [, d] of daemons()) expect(await records(d)).toEqual(want);

    const [img] = await images(berthd);
    expect(img).toEqual({
      id: app.config.digest,
      repoTags: [`${repo}:latest`, `${repo}:v1`, `${repo}:v2`],
      repoDigests: [`${repo}@${app.target.digest}`],
      size: String(app.manifest.size + app.config.size + app.layers.reduce((n, l) => n + l.desc.size, 0)),
      uid: { value: '1003' },
      username: '',
      spec: { image: app.config.digest, annotations: {} },
      pinned: false,
    });
    if (containerd) {
      // containerd 1.6 leaves spec unset; every other field is the same.
      const {
        spec: _s,
        pinned: _p,
        ...theirs
      } = (await images(containerd))[0]! as CriImage & {
        spec?: unknown;
        pinned?: unknown;
      };
      const { spec: _s2, pinned: _p2, ...ours } = img as CriImage & { spec?: unknown; pinned?: unknown };
      expect(ours).toEqual(theirs);
    }
  });

  it('pulls by digest (no tag record) and sizes an index as containerd does', async () => {
    const byDigest = `${reg()}/e2e/named@${named.target.digest}`;
    for (const [, d] of daemons()) {
      await ok(d, ['pull', byDigest]);
      await ok(d, ['pull', `${reg()}/e2e/indexed:v1`]);
    }
    const recs = await records(berthd);
    expect(recs.get(byDigest)).toEqual([named.target.digest, 'io.cri-containerd.image=managed']);
    expect(recs.get(named.config.digest)).toEqual([named.target.digest, 'io.cri-containerd.image=managed']);
    expect([...recs.keys()].filter((n) => n.includes('e2e/named'))).toEqual([byDigest]);
    const s = (await inspect(berthd, byDigest)).status;
    expect(s.repoTags).toEqual([]);
    expect(s.repoDigests).toEqual([byDigest]);
    expect(s.uid).toBeNull();
    expect(s.username).toBe('www-data');
    const ix = (await inspect(berthd, `${reg()}/e2e/indexed:v1`)).status;
    expect(ix.id).toBe(indexed.config.digest);
    expect(Number(ix.size)).toBe(
      indexed.index!.size +
        indexed.manifest.size +
        indexed.config.size +
        indexed.layers.reduce((n, l) => n + l.desc.size, 0),
    );
    if (containerd) {
      expect(await images(berthd)).toEqual(
        (await images(containerd)).map((i) => ({
          ...i,
          spec: { image: i.id, annotations: {} },
          pinned: false,
        })),
      );
      expect(await records(berthd)).toEqual(await records(containerd));
    }
  });

  it('inspects by tag, digest reference, id and id prefix; verbose info as containerd', async () => {
    const want = (await inspect(berthd, `${reg()}/e2e/app:v1`)).status;
    for (const spelling of [
      `${reg()}/e2e/app`,
      `${reg()}/e2e/app@${app.target.digest}`,
      app.config.digest,
      app.config.digest.slice(7, 19),
    ])
      expect((await inspect(berthd, spelling)).status).toEqual(want);
    const verbose = (await inspect(berthd, `${reg()}/e2e/named@${named.target.digest}`)).info;
    expect(verbose.chainID).toMatch(/^sha256:/);
    expect((verbose.imageSpec as { config: { User: string } }).config.User).toBe('www-data:1004');
    if (containerd) {
      const theirs = (await inspect(containerd, `${reg()}/e2e/named@${named.target.digest}`)).info;
      expect(verbose).toEqual(theirs);
    }
  });

  it('inspects an absent image as no image, not an error', async () => {
    const r = await crictl(berthd, ['inspecti', `${reg()}/e2e/absent:v1`]);
    expect(r.stderr).toContain('no such image');
    expect(r.code).not.toBe(0);
    expect(
      JSON.parse((await crictl(berthd, ['images', '-o', 'json', `${reg()}/e2e/absent:v1`])).stdout),
    ).toEqual({
      images: [],
    });
  });

  it('lists with a filter only the image it names', async () => {
    const out = JSON.parse(
      await ok(berthd, ['images', '-o', 'json', `${reg()}/e2e/named@${named.target.digest}`]),
    );
    expect(out.images.map((i: CriImage) => i.id)).toEqual([named.config.digest]);
  });

  it('reports the snapshotter directory as the image filesystem', async () => {
    for (const [, d] of daemons()) {
      const theirs = JSON.parse(await ok(d, ['imagefsinfo', '-o', 'json'])).status;
      expect(theirs.fsId.mountpoint).toBe(join(d.root, 'io.containerd.snapshotter.v1.overlayfs'));
    }
    const fs = JSON.parse(await ok(berthd, ['imagefsinfo', '-o', 'json'])).status;
    // Three images of busybox and a small layer: a few MB and hundreds of inodes.
    expect(Number(fs.usedBytes.value)).toBeGreaterThan(1_000_000);
    expect(Number(fs.inodesUsed.value)).toBeGreaterThan(100);
  });

  it('removes every record of an image by tag, id or digest reference; removing an absent one is no error', async () => {
    for (const [, d] of daemons()) {
      await ok(d, ['rmi', `${reg()}/e2e/app:v2`]);
      const recs = await records(d);
      expect([...recs.keys()].filter((n) => n.includes('e2e/app') || n === app.config.digest)).toEqual([]);
      expect((await images(d)).map((i) => i.id)).not.toContain(app.config.digest);
      await ok(d, ['rmi', named.config.digest.slice(7)]);
      await ok(d, ['rmi', `${reg()}/e2e/indexed@${indexed.target.digest}`]);
      expect((await records(d)).size).toBe(0);
      // The content and snapshots went with the last record (the synchronous garbage collection).
      const content = await ctr(d.address, ['-n', 'k8s.io', 'content', 'ls', '-q']);
      expect(content.stdout.trim()).toBe('');
      const snapshots = await ctr(d.address, ['-n', 'k8s.io', 'snapshots', 'ls']);
      expect(snapshots.stdout.trim().split('\n').slice(1)).toEqual([]);
    }
    // crictl rmi of an absent image fails on the client side (its ImageStatus finds none);
    // RemoveImage itself is idempotent, which critest's removal checks exercise.
    const again = await crictl(berthd, ['rmi', `${reg()}/e2e/app:v2`]);
    expect(again.stderr).toContain('no such image');
    for (const [, d] of daemons()) {
      for (const image of [`${reg()}/e2e/app:v2`, app.config.digest, 'sha256:0123'])
        await expect(imageCall(d, 'RemoveImage', { image: { image } })).resolves.toEqual({});
      const status = await imageCall(d, 'ImageStatus', { image: { image: app.config.digest } });
      expect(status.image).toBeUndefined();
    }
  });

  it('is NotFound naming the reference for an image the registry does not have', async () => {
    const ref = `${reg()}/e2e/nothere:v1`;
    const r = await crictl(berthd, ['pull', ref]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('code = NotFound');
    expect(r.stderr).toContain(ref);
    if (containerd) expect((await crictl(containerd, ['pull', ref])).stderr).toContain('code = NotFound');
  });

  it('is InvalidArgument naming a reference that is not one', async () => {
    const r = await crictl(berthd, ['pull', `${reg()}/E2E/Bad:v1`]);
    expect(r.stderr).toContain('code = InvalidArgument');
    expect(r.stderr).toContain(`${reg()}/E2E/Bad:v1`);
  });

  it("pulls from a registry that wants credentials with the request's --creds or --auth only", async () => {
    const ref = `${privateRegistry.host}/e2e/private:v1`;
    const anon = await crictl(berthd, ['pull', ref]);
    expect(anon.code).not.toBe(0);
    expect(anon.stderr).toContain(ref);
    const wrong = await crictl(berthd, ['pull', '--creds', 'alice:nope', ref]);
    expect(wrong.code).not.toBe(0);
    await ok(berthd, ['pull', '--creds', 'alice:s3cret:x', ref]);
    expect((await inspect(berthd, ref)).status.id).toBe(app.config.digest);
    await ok(berthd, ['rmi', ref]);
    await ok(berthd, ['pull', '--auth', Buffer.from('alice:s3cret:x').toString('base64'), ref]);
    expect((await records(berthd)).get(ref)).toEqual([app.target.digest, 'io.cri-containerd.image=managed']);
  });

  it('answers every one of concurrent pulls of one reference with the id, leaving one record', async () => {
    const ref = `${reg()}/e2e/named:v1`;
    const outs = await Promise.all([1, 2, 3].map(() => ok(berthd, ['pull', ref])));
    for (const o of outs) expect(o).toContain(named.config.digest);
    expect((await records(berthd)).get(ref)).toEqual([
      named.target.digest,
      'io.cri-containerd.image=managed',
    ]);
  });
});
