/**
 * `berth snapshots …` against real daemons (containerd, and berthd when built): the same
 * script run by berth in one namespace and by the stock ctr in another must print the same
 * (exit codes, stdout, stderr with `berth:` for `ctr:`), once namespaces, daemon roots,
 * backing ids and times are masked. Needs root (overlayfs).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  berth,
  containerdInstalled,
  ctr,
  type Daemon,
  type RunResult,
  repoRoot,
  startBerthd,
  startContainerd,
} from '@berth/testkit';

const built = existsSync(join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));
const daemons: [string, () => Promise<Daemon>][] = [];
if (built && containerdInstalled()) daemons.push(['containerd', () => startContainerd()]);
if (built && existsSync(join(repoRoot, 'packages', 'daemon', 'dist', 'main.js'))) {
  daemons.push(['berthd', () => startBerthd()]);
}
if (daemons.length === 0) it.skip('needs a built CLI (pnpm build) and a daemon to talk to', () => {});

/** The commands both tools have, happy and failing paths (views are inspected before any removal). */
const SCRIPT = (sn: string): string[][] =>
  [
    ['ls'],
    // Views carry no gc.root label (as ctr makes them): use them before anything is removed.
    ['prepare', 'a'],
    ['prepare', 'a'],
    ['mounts', '/mnt/t', 'a'],
    ['commit', 'base', 'a'],
    ['commit', 'x', 'missing'],
    ['prepare', '--mounts', 'child', 'base'],
    ['prepare', '-t', '/mnt/t', 'child2', 'base'],
    ['prepare', 'orphan', 'missing'],
    ['view', 'v', 'base'],
    ['view', '--mounts', 'v2', 'base'],
    ['mounts', '/mnt/t', 'v'],
    ['mounts', '/mnt/t', 'base'],
    ['commit', 'again', 'base'],
    ['ls'],
    ['tree'],
    ['usage'],
    ['usage', '-b', 'base', 'v'],
    ['usage', 'missing'],
    ['info', 'child'],
    ['info', 'v'],
    ['info', 'missing'],
    ['label', 'base', 'one=1'],
    ['label', 'base', 'two=2', 'one='],
    ['label', 'base'],
    ['label', 'missing', 'k=v'],
    ['rm', 'base'],
    ['rm', 'child', 'missing', 'child2'],
    ['rm', 'child2', 'base'],
    ['ls'],
  ].map((args) => ['snapshots', '--snapshotter', sn, ...args]);

function normalise(r: RunResult, ns: string, root: string): string {
  const mask = (t: string) =>
    t
      .split(root)
      .join('<ROOT>')
      .split(ns)
      .join('<NS>')
      .replace(/^(ctr|berth): /gm, '<TOOL>: ')
      .replace(/\/snapshots\/\d+/g, '/snapshots/<ID>')
      .replace(/<NS>\/\d+\//g, '<NS>/<SEQ>/')
      .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z/g, '<TIME>')
      // ctr prints labels from a Go map, in random order.
      .replace(/^[^\s=,]+=[^\s,]*(?:,[^\s=,]+=[^\s,]*)+$/gm, (l) => l.split(',').sort().join(','));
  return `exit ${r.code}\n${mask(r.stdout)}${mask(r.stderr)}`;
}

describe.each(daemons)('berth snapshots against %s', (_name, start) => {
  let daemon: Daemon;
  beforeAll(async () => {
    daemon = await start();
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  for (const sn of ['overlayfs', 'native']) {
    it(`${sn}: prints what ctr prints`, async () => {
      const theirs: string[] = [];
      const ours: string[] = [];
      for (const args of SCRIPT(sn)) {
        const c = await ctr(daemon.address, ['-n', `ctr-${sn}`, ...args]);
        const b = await berth(daemon.address, ['-n', `berth-${sn}`, ...args]);
        theirs.push(`$ ${args.join(' ')}\n${normalise(c, `ctr-${sn}`, daemon.root)}`);
        ours.push(`$ ${args.join(' ')}\n${normalise(b, `berth-${sn}`, daemon.root)}`);
      }
      expect(ours.join('\n')).toBe(theirs.join('\n'));
    });
  }

  it('takes --snapshotter before or after the command word, from the environment, or the namespace default', async () => {
    const ns = 'berth-pick';
    const b = (args: string[], env?: NodeJS.ProcessEnv) =>
      berth(daemon.address, ['-n', ns, ...args], env ? { env: { ...process.env, ...env } } : {});
    expect((await b(['snapshots', 'prepare', '--snapshotter', 'native', 'n1'])).code).toBe(0);
    expect((await b(['snapshots', '--snapshotter', 'native', 'ls'])).stdout).toMatch(/\nn1 +Active/);
    expect((await b(['snapshots', 'ls'], { CONTAINERD_SNAPSHOTTER: 'native' })).stdout).toMatch(
      /\nn1 +Active/,
    );
    expect((await b(['snapshots', 'ls'])).stdout).not.toContain('n1');
    expect(
      (await berth(daemon.address, ['namespaces', 'label', ns, 'containerd.io/defaults/snapshotter=native']))
        .code,
    ).toBe(0);
    expect((await b(['snapshots', 'ls'])).stdout).toMatch(/\nn1 +Active/);
    const bogus = await b(['snapshots', '--snapshotter', 'bogus', 'ls']);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toMatch(/^berth: .*bogus/);
    const json = JSON.parse((await b(['--format', 'json', 'snapshots', 'ls'])).stdout);
    expect(json).toEqual([expect.objectContaining({ name: 'n1', kind: 'active', parent: '' })]);
    expect((await b(['snapshots', 'rm', 'n1'])).code).toBe(0);
  });

  it('answers usage errors with exit 2', async () => {
    const r = await berth(daemon.address, ['snapshots', 'commit', 'only-one']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expects 2 arguments, got 1/);
    expect((await berth(daemon.address, ['snapshots', 'mounts', 'x'])).code).toBe(2);
    expect((await berth(daemon.address, ['snapshots', 'nope'])).code).toBe(2);
  });
});
