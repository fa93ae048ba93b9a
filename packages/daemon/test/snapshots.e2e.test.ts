/**
 * Snapshots as a user sees them: the stock containerd `ctr snapshots …` runs the same
 * script against berthd and against Debian's containerd, for overlayfs and for native, and
 * every command's exit code, stdout and stderr must agree once what legitimately differs
 * is masked (daemon roots, backing snapshot ids, times). A proxy snapshotter configured in
 * config.toml shows in `ctr plugins ls` and works with `ctr snapshots --snapshotter`.
 * Needs root (overlayfs, mounts).
 */
import { join } from 'node:path';
import {
  containerdInstalled,
  ctr,
  type Daemon,
  makeTempDir,
  removeDir,
  type SnapshotterServer,
  startBerthd,
  startContainerd,
  startSnapshotterServer,
} from '@berth/testkit';

interface Step {
  args: string[];
  /** Commands whose output is a label list printed from a Go map (random order). */
  unorderedLabels?: boolean;
}

/**
 * The script for one snapshotter. The one view ctr makes carries no gc.root label, so it
 * is inspected and removed before the first deletion (after which berthd collects
 * unreferenced snapshots within 100 ms, containerd after many more mutations).
 */
function script(sn: string, ns: string): Step[] {
  const s = (...args: string[]): Step => ({ args: ['-n', ns, 'snapshots', '--snapshotter', sn, ...args] });
  return [
    s('ls'),
    s('prepare', 'base-active'),
    s('prepare', 'base-active'),
    s('ls'),
    s('mounts', '/mnt/target', 'base-active'),
    s('usage', 'base-active'),
    s('commit', 'base', 'base-active'),
    s('commit', 'base', 'base-active'),
    s('commit', 'other', 'missing'),
    s('prepare', 'child', 'base'),
    s('prepare', 'orphan', 'missing'),
    s('prepare', 'grandchild', 'child'),
    s('prepare', '--mounts', 'printed', 'base'),
    s('prepare', '--target', '/mnt/target', 'targeted', 'base'),
    s('view', 'look', 'base'),
    s('view', 'look', 'base'),
    s('view', '--mounts', 'look-again', 'nothing-here'),
    s('mounts', '/mnt/target', 'look'),
    s('mounts', '/mnt/target', 'child'),
    s('mounts', '/mnt/target', 'base'),
    s('mounts', '/mnt/target', 'missing'),
    s('commit', 'child-of-base', 'base'),
    s('ls'),
    s('tree'),
    s('usage'),
    s('usage', '-b', 'base', 'child', 'look'),
    s('usage', 'missing'),
    s('info', 'base'),
    s('info', 'child'),
    s('info', 'look'),
    s('info', 'missing'),
    s('rm', 'look'),
    { ...s('label', 'base', 'tier=gold', 'team=core'), unorderedLabels: true },
    { ...s('label', 'base', 'team='), unorderedLabels: true },
    { ...s('label', 'base'), unorderedLabels: true },
    s('label', 'missing', 'a=b'),
    s('info', 'base'),
    s('rm', 'base'),
    s('rm', 'missing'),
    s('rm', 'printed', 'targeted', 'missing', 'child'),
    s('ls'),
    { args: ['namespaces', 'rm', ns] },
    s('commit', 'child', 'child'),
    s('rm', 'child', 'base'),
    s('ls'),
    { args: ['namespaces', 'rm', ns] },
    { args: ['-n', ns, 'snapshots', '--snapshotter', 'bogus', 'ls'] },
  ];
}

/** Masks what differs between two daemons: their roots, backing ids, times; sorts Go-map label lists. */
function normalise(text: string, root: string): string {
  return text
    .split(root)
    .join('<ROOT>')
    .replace(/\/snapshots\/\d+/g, '/snapshots/<ID>')
    .replace(/"([a-z0-9-]+)\/\d+\//g, '"$1/<SEQ>/')
    .replace(/ ([a-z0-9-]+)\/\d+\//g, ' $1/<SEQ>/')
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/g, '<TIME>')
    .replace(/[ \t]+/g, ' ')
    .replace(/ +$/gm, '');
}

async function transcript(d: Daemon, steps: Step[]): Promise<string> {
  const out: string[] = [];
  for (const step of steps) {
    const r = await ctr(d.address, step.args);
    let stdout = normalise(r.stdout, d.root);
    if (step.unorderedLabels)
      stdout = stdout.replace(/^(\S+=\S*(?:,\S+=\S*)*)$/gm, (l) => l.split(',').sort().join(','));
    out.push(`$ ctr ${step.args.join(' ')}\nexit ${r.code}\n${stdout}${normalise(r.stderr, d.root)}`);
  }
  return out.join('\n');
}

const describeIf = containerdInstalled() ? describe : describe.skip;

describeIf('stock ctr snapshots: berthd answers as containerd does', () => {
  let berthd: Daemon;
  let containerd: Daemon;

  beforeAll(async () => {
    [berthd, containerd] = await Promise.all([startBerthd(), startContainerd()]);
  });
  afterAll(async () => {
    await Promise.all([berthd?.dispose(), containerd?.dispose()]);
  });

  for (const sn of ['overlayfs', 'native']) {
    test(`${sn}: the same transcript`, async () => {
      const steps = script(sn, `e2e-${sn}`);
      const [expected, actual] = await Promise.all([
        transcript(containerd, steps),
        transcript(berthd, steps),
      ]);
      expect(actual).toBe(expected);
    });
  }

  test('ctr plugins ls shows both snapshotters, the differ and the services as ok', async () => {
    const r = await ctr(berthd.address, ['plugins', 'ls']);
    expect(r.code).toBe(0);
    const rows = r.stdout
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    const row = (type: string, id: string) => rows.find((x) => x[0] === type && x[1] === id);
    expect(row('io.containerd.snapshotter.v1', 'overlayfs')?.slice(2)).toEqual([
      expect.stringMatching(/^linux\//),
      'ok',
    ]);
    expect(row('io.containerd.snapshotter.v1', 'native')?.at(-1)).toBe('ok');
    expect(row('io.containerd.differ.v1', 'walking')?.at(-1)).toBe('ok');
    for (const id of ['snapshots', 'diff']) expect(row('io.containerd.grpc.v1', id)?.at(-1)).toBe('ok');
  });
});

describe('a proxy snapshotter from config.toml', () => {
  let server: SnapshotterServer;
  let berthd: Daemon;
  let dir: string;

  beforeAll(async () => {
    dir = makeTempDir('proxy-e2e-');
    server = await startSnapshotterServer({ type: 'native', dir });
    berthd = await startBerthd({
      config: [
        'version = 2',
        '[proxy_plugins.mysnap]',
        '  type = "snapshot"',
        `  address = "${server.address}"`,
        '',
      ].join('\n'),
    });
  });
  afterAll(async () => {
    await berthd?.dispose();
    await server?.dispose();
    if (dir) removeDir(dir);
  });

  test('appears in ctr plugins ls with its address', async () => {
    const r = await ctr(berthd.address, ['plugins', 'ls', 'id==mysnap']);
    expect(r.stdout).toMatch(/io\.containerd\.snapshotter\.v1\s+mysnap\s+-\s+ok/);
    const d = await ctr(berthd.address, ['plugins', 'ls', '-d', 'id==mysnap']);
    expect(d.stdout).toMatch(new RegExp(`Exports:\\s+address\\s+${server.address}\\n`));
  });

  test('works with ctr snapshots --snapshotter mysnap, and keeps the snapshots in the server', async () => {
    const s = (...args: string[]) => ctr(berthd.address, ['snapshots', '--snapshotter', 'mysnap', ...args]);
    expect((await s('prepare', 'k')).code).toBe(0);
    expect((await s('commit', 'layer', 'k')).code).toBe(0);
    expect((await s('prepare', 'top', 'layer')).code).toBe(0);
    const ls = await s('ls');
    expect(normalise(ls.stdout, berthd.root)).toBe('KEY PARENT KIND\nlayer Committed\ntop layer Active\n');
    const mounts = await s('mounts', '/mnt/x', 'top');
    // The server's own directories, under its root: berthd only forwards.
    expect(mounts.stdout).toMatch(
      new RegExp(`^mount -t bind ${join(server.root, 'snapshots')}/\\d+ /mnt/x -o rbind,rw\\n$`),
    );
    expect((await s('rm', 'layer')).stderr).toContain('cannot remove snapshot with child');
    const other = await ctr(berthd.address, ['snapshots', '--snapshotter', 'overlayfs', 'ls']);
    expect(normalise(other.stdout, berthd.root)).toBe('KEY PARENT KIND\n');
  });

  test('answers Unavailable while the server is down, and works again once it is back', async () => {
    await server.stop();
    const down = await ctr(berthd.address, ['snapshots', '--snapshotter', 'mysnap', 'ls']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/unavailable|connection/i);
    server = await startSnapshotterServer({ type: 'native', dir });
    // gRPC reconnects with backoff (as containerd's proxy client): retry as a user would.
    let up = await ctr(berthd.address, ['snapshots', '--snapshotter', 'mysnap', 'ls']);
    for (let i = 0; i < 40 && up.code !== 0; i++) {
      await new Promise((r) => setTimeout(r, 250));
      up = await ctr(berthd.address, ['snapshots', '--snapshotter', 'mysnap', 'ls']);
    }
    expect(up.stdout).toContain('layer');
  });
});
