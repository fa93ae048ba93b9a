import { join } from 'node:path';
import {
  buildImage,
  busyboxInstalled,
  containerdInstalled,
  ctr,
  type Daemon,
  file,
  hostPlatform,
  makeTempDir,
  removeDir,
  startContainerd,
  writeDockerArchive,
  writeOciLayout,
} from '@berth/testkit';

// The images the test kit builds must be real: Debian's containerd imports them with stock ctr
// and runs them with its own runc shim.
const canRun = containerdInstalled() && busyboxInstalled() && process.getuid?.() === 0;
const describeReal = canRun ? describe : describe.skip;

describeReal('test images in real containerd', () => {
  let daemon: Daemon;
  let dir: string;

  beforeAll(async () => {
    daemon = await startContainerd();
    dir = makeTempDir('testkit-images-int-');
  });

  afterAll(async () => {
    await daemon?.dispose();
    if (dir) removeDir(dir);
  });

  const c = async (...args: string[]) => {
    const r = await ctr(daemon.address, args);
    if (r.code !== 0)
      throw new Error(`ctr ${args.join(' ')} failed (${r.code}): ${r.stderr}\n${daemon.logs().slice(-2000)}`);
    return r.stdout;
  };

  it('imports an OCI layout tar and runs echo with the runc shim', async () => {
    const img = buildImage({ layers: ['busybox'] });
    const tar = join(dir, 'oci.tar');
    writeOciLayout(tar, img, 'berth.test/busybox:oci');
    await c('images', 'import', tar);
    const ls = await c('images', 'ls');
    expect(ls).toContain('berth.test/busybox:oci');
    expect(ls).toContain(img.target.digest);
    expect(await c('run', '--rm', 'berth.test/busybox:oci', 't1', '/bin/echo', 'hi')).toBe('hi\n');
  });

  it("runs the image config's entrypoint, cmd, env, working dir and user", async () => {
    const img = buildImage({
      layers: ['busybox', [file('/etc/motd', 'from layer two\n')]],
      config: {
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: [
          'echo "$GREETING in $(pwd) as $(id -u):$(id -g)"; cat /etc/motd; touch /tmp/ok && echo tmp writable',
        ],
        Env: ['PATH=/bin', 'GREETING=hello'],
        WorkingDir: '/tmp',
        User: 'nobody',
      },
    });
    const tar = join(dir, 'config.tar');
    writeOciLayout(tar, img, 'berth.test/config:1');
    await c('images', 'import', tar);
    expect(await c('run', '--rm', 'berth.test/config:1', 't2')).toBe(
      'hello in /tmp as 65534:65534\nfrom layer two\ntmp writable\n',
    );
  });

  it('imports a docker save archive and runs it', async () => {
    const img = buildImage({ layers: ['busybox'], mediaTypes: 'docker', config: { Cmd: ['/bin/sh'] } });
    const tar = join(dir, 'docker.tar');
    writeDockerArchive(tar, img, 'dockerish:v1');
    await c('images', 'import', tar);
    expect(await c('images', 'ls', '-q')).toContain('docker.io/library/dockerish:v1');
    const out = await c(
      'run',
      '--rm',
      'docker.io/library/dockerish:v1',
      't3',
      '/bin/sh',
      '-c',
      'echo $((6*7))',
    );
    expect(out).toBe('42\n');
  });

  it('imports a multi-platform index and runs the host platform', async () => {
    const img = buildImage({
      layers: ['busybox'],
      extraPlatforms: [
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
        { os: 'linux', architecture: 's390x' },
      ],
    });
    const tar = join(dir, 'index.tar');
    writeOciLayout(tar, img, 'berth.test/multi:latest');
    await c('images', 'import', '--all-platforms', tar);
    const ls = await c('images', 'ls');
    const line = ls.split('\n').find((l) => l.startsWith('berth.test/multi:latest'));
    expect(line).toContain('application/vnd.oci.image.index.v1+json');
    const host = hostPlatform();
    for (const p of [`${host.os}/${host.architecture}`, 'linux/arm64/v8', 'linux/s390x'])
      expect(line).toContain(p);
    expect(await c('images', 'check')).toMatch(/berth\.test\/multi:latest\s+\S+\s+sha256:\S+\s+complete/);
    expect(await c('run', '--rm', 'berth.test/multi:latest', 't4', '/bin/echo', 'multi')).toBe('multi\n');
  });
});
