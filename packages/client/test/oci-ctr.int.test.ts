import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { oci } from '@berth/client';
import {
  type BuiltImage,
  buildImage,
  busyboxInstalled,
  containerdInstalled,
  ctr,
  type Daemon,
  file,
  makeTempDir,
  removeDir,
  run,
  startContainerd,
  writeOciLayout,
} from '@berth/testkit';

const CTR = '/usr/bin/ctr';
const describeCtr = existsSync(CTR) ? describe : describe.skip;
const describeContainerd =
  containerdInstalled() && busyboxInstalled() && process.getuid?.() === 0 ? describe : describe.skip;

// `ctr oci spec` prints containerd's own default spec (oci.GenerateSpec for an empty container
// id in the --namespace given); it needs no daemon.
async function ctrDefaultSpec(namespace: string): Promise<unknown> {
  const r = await run(CTR, ['--namespace', namespace, 'oci', 'spec']);
  if (r.code !== 0) throw new Error(`ctr oci spec: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describeCtr('default spec against containerd 1.6 (ctr oci spec)', () => {
  it.each(['default', 'k8s.io', 'other-ns'])('is field for field the same in namespace %s', async (ns) => {
    const theirs = await ctrDefaultSpec(ns);
    const ours = JSON.parse(JSON.stringify(oci.defaultSpec(ns, '')));
    expect(ours).toEqual(theirs);
  });

  it('serialises to the same JSON text, key order included', async () => {
    const r = await run(CTR, ['oci', 'spec']);
    expect(JSON.stringify(oci.defaultSpec('default', ''), null, 4)).toBe(r.stdout.trimEnd());
  });
});

// The spec ctr run builds (client side, from the image in containerd) against ours for the same
// flags: `ctr containers create` then `ctr containers info --spec`.
describeContainerd('run options against ctr run in real containerd', () => {
  let daemon: Daemon;
  let dir: string;
  let rootfs: string;
  let image: BuiltImage;
  const ref = 'berth.test/spec:1';
  let seq = 0;

  beforeAll(async () => {
    dir = makeTempDir('oci-ctr-');
    image = buildImage({
      layers: [
        'busybox',
        [
          file('/etc/group', 'root:x:0:\nwheel:x:10:root,nobody\nnobody:x:65534:\nstaff:x:50:nobody\n'),
          file(
            '/etc/passwd',
            'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/:/bin/sh\n',
          ),
        ],
      ],
      config: {
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: ['echo $GREETING'],
        Env: ['PATH=/usr/bin:/bin', 'GREETING=hello'],
        WorkingDir: '/tmp',
        User: 'nobody',
      },
    });
    // Our side reads users from the image's files, unpacked here by GNU tar.
    rootfs = join(dir, 'rootfs');
    mkdirSync(rootfs);
    for (const [i, layer] of image.layers.entries()) {
      const path = join(dir, `layer${i}.tar`);
      require('node:fs').writeFileSync(path, layer.tar);
      execFileSync('tar', ['-xf', path, '-C', rootfs]);
    }
    daemon = await startContainerd();
    const tar = join(dir, 'image.tar');
    writeOciLayout(tar, image, ref);
    const r = await ctr(daemon.address, ['images', 'import', tar]);
    if (r.code !== 0) throw new Error(r.stderr);
  });

  afterAll(async () => {
    await daemon?.dispose();
    if (dir) removeDir(dir);
  });

  // `ctr run` (no --rm) leaves the container behind whether the task ran or could not start (as
  // with --tty, which wants a console this test does not have): its spec is what ctr built.
  async function theirSpec(
    flags: string[],
    imageRef: string,
    args: string[],
  ): Promise<{ id: string; spec: unknown }> {
    const id = `c${++seq}`;
    const ran = await ctr(daemon.address, ['run', ...flags, imageRef, id, ...args]);
    const info = await ctr(daemon.address, ['containers', 'info', '--spec', id]);
    if (info.code !== 0) throw new Error(`ctr run: ${ran.stderr}\nctr containers info: ${info.stderr}`);
    await ctr(daemon.address, ['tasks', 'delete', '--force', id]);
    const rm = await ctr(daemon.address, ['containers', 'rm', id]);
    if (rm.code !== 0) throw new Error(`ctr containers rm: ${rm.stderr}`);
    return { id, spec: JSON.parse(info.stdout) };
  }

  async function ourSpec(
    id: string,
    flags: oci.RunSpecOptions,
    config = image.configJson.config as oci.ImageConfig,
  ) {
    const spec = await oci.generateSpec(
      { namespace: 'default', id, rootfs },
      ...oci.runSpecOpts({ image: config, ...flags }),
    );
    return JSON.parse(JSON.stringify(spec));
  }

  it('same spec for a plain run of the image (entrypoint, cmd, env, cwd, user and groups)', async () => {
    const { id, spec } = await theirSpec([], ref, []);
    const ours = await ourSpec(id, {});
    expect(ours.process.user).toEqual({ uid: 65534, gid: 65534, additionalGids: [65534, 10, 50] });
    expect(ours).toEqual(spec);
  });

  it('same spec with a command, env, mounts, read-only root, cwd, host network and capabilities', async () => {
    const flags = [
      '--env',
      'A=1',
      '--env',
      'PATH=/opt/bin',
      '--mount',
      'type=bind,src=/tmp,dst=/mnt,options=rbind:ro',
      '--read-only',
      '--cwd',
      '/w',
      '--net-host',
      '--cap-add',
      'CAP_SYS_ADMIN',
      '--cap-drop',
      'CAP_NET_RAW',
      '--label',
      'team=berth',
      '--memory-limit',
      '67108864',
      '--cgroup',
      '/custom/cg',
    ];
    const { id, spec } = await theirSpec(flags, ref, ['/bin/echo', 'hi']);
    const ours = await ourSpec(id, {
      args: ['/bin/echo', 'hi'],
      env: ['A=1', 'PATH=/opt/bin'],
      mounts: ['type=bind,src=/tmp,dst=/mnt,options=rbind:ro'],
      readonly: true,
      cwd: '/w',
      netHost: true,
      capAdd: ['CAP_SYS_ADMIN'],
      capDrop: ['CAP_NET_RAW'],
      annotations: { team: 'berth' },
      memoryLimit: 67108864,
      cgroup: '/custom/cg',
    });
    expect(ours).toEqual(spec);
  });

  it('same spec for --tty (a terminal and TERM)', async () => {
    const { id, spec } = await theirSpec(['--tty', '--env', 'TERM=vt100'], ref, ['/bin/sh']);
    expect(await ourSpec(id, { tty: true, env: ['TERM=vt100'], args: ['/bin/sh'] })).toEqual(spec);
  });

  it('same spec for --privileged', async () => {
    const { id, spec } = await theirSpec(['--privileged'], ref, ['/bin/true']);
    const ours = await ourSpec(id, { privileged: true, args: ['/bin/true'] });
    expect(ours).toEqual(spec);
  });

  it.each([
    ['a numeric user missing from /etc/passwd', { User: '1234' }],
    ['user:group by name', { User: 'app:staff' }],
    ['no user (root and its groups)', {}],
  ])('same user resolution for %s', async (_name, user) => {
    const config = { Cmd: ['/bin/true'], ...user };
    const img = buildImage({ layers: image.layers.map((l) => ({ tar: l.tar })), config });
    const userRef = `berth.test/user:${++seq}`;
    const tar = join(dir, `user${seq}.tar`);
    writeOciLayout(tar, img, userRef);
    const r = await ctr(daemon.address, ['images', 'import', tar]);
    if (r.code !== 0) throw new Error(r.stderr);
    const { id, spec } = await theirSpec([], userRef, []);
    expect(await ourSpec(id, {}, config)).toEqual(spec);
  });
});
