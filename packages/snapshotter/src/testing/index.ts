import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context, ErrorCode, Mount, SnapshotInfo, SnapshotOptions, Snapshotter } from '@berth/api';
import { MNT, mountAll, unmountAll } from '@berth/sys';
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import {
  type Applier,
  apply,
  checkDirectoryEqual,
  chmodPath,
  chown,
  createDir,
  createFile,
  link,
  mkchardev,
  mkfifo,
  removeAll,
  rename,
  setTimes,
  setXattr,
  symlink,
} from './fstest';

export * from './fstest';

/** What the suite needs of one snapshotter under test: a fresh one per test. */
export interface SnapshotterFixture {
  snapshotter: Snapshotter;
  /** Passed to every call (a namespace when the snapshotter is reached through the daemon). */
  ctx: Context;
  /** Closes the snapshotter (it may already be closed) and removes whatever the factory made. */
  cleanup: () => Promise<void>;
}

export type SnapshotterFactory = () => Promise<SnapshotterFixture>;

export interface SnapshotterSuiteOptions {
  /** Titles of tests to skip, with the reason kept next to the call. */
  skip?: string[];
  /** Where mount points and comparison trees go; os.tmpdir() by default. */
  workDir?: string;
}

/** One test's world: the snapshotter, a scratch directory, and every mount it made (undone at the end). */
export class SuiteEnv {
  private readonly mounted: string[] = [];
  private seq = 0;

  constructor(
    readonly sn: Snapshotter,
    readonly ctx: Context,
    readonly work: string,
    private readonly cleanupFixture: () => Promise<void>,
  ) {}

  /** Labels every snapshot the suite makes carries, as containerd's suite (a GC root). */
  readonly opt: SnapshotOptions = { labels: { 'containerd.io/gc.root': new Date().toISOString() } };

  /** A fresh directory in the scratch area. */
  async dir(prefix = 'd'): Promise<string> {
    const d = await mkdtemp(join(this.work, `${prefix}-`));
    await chmod(d, 0o755);
    return d;
  }

  /** Mounts onto a fresh directory (or target); the mount is undone by unmount() or at the end. */
  async mount(mounts: Mount[], target?: string): Promise<string> {
    expect(mounts.length).toBeGreaterThan(0);
    const dir = target ?? (await this.dir('mnt'));
    await mountAll(mounts, dir);
    this.mounted.push(dir);
    return dir;
  }

  async unmount(dir: string): Promise<void> {
    await unmountAll(dir);
    const i = this.mounted.lastIndexOf(dir);
    if (i >= 0) this.mounted.splice(i, 1);
  }

  /** Prepares key on parent and mounts it. */
  async prepareMount(key: string, parent = ''): Promise<string> {
    return this.mount(await this.sn.prepare(this.ctx, key, parent, this.opt));
  }

  /** Mounts, applies, unmounts. */
  async applyToMounts(mounts: Mount[], a: Applier): Promise<void> {
    const dir = await this.mount(mounts);
    try {
      await a(dir);
    } finally {
      await this.unmount(dir);
    }
  }

  /** A committed snapshot on parent holding what the applier did; returns its name. */
  async createSnapshot(parent: string, a: Applier): Promise<string> {
    const name = `layer-${++this.seq}-${randomBytes(4).toString('hex')}`;
    const prepare = `${name}-prepare`;
    await this.applyToMounts(await this.sn.prepare(this.ctx, prepare, parent, this.opt), a);
    await this.sn.commit(this.ctx, name, prepare, this.opt);
    return name;
  }

  /** Views the committed snapshot name and compares it with the tree at check. */
  async checkSnapshot(name: string, check: string, opts?: { mtimes?: boolean }): Promise<void> {
    const view = `${name}-view`;
    const dir = await this.mount(await this.sn.view(this.ctx, view, name, this.opt));
    try {
      await checkDirectoryEqual(check, dir, opts);
    } finally {
      await this.unmount(dir);
      await this.sn.remove(this.ctx, view);
    }
  }

  /** Builds a chain with one layer per applier, checking each layer's view against a flat tree. */
  async checkSnapshots(appliers: Applier[], opts?: { mtimes?: boolean }): Promise<string[]> {
    const flat = await this.dir('flat');
    const names: string[] = [];
    let parent = '';
    for (const [i, a] of appliers.entries()) {
      const name = await this.createSnapshot(parent, a);
      await a(flat);
      try {
        await this.checkSnapshot(name, flat, opts);
      } catch (e) {
        throw new Error(`layer ${i + 1}: ${(e as Error).message}`, { cause: e });
      }
      names.push(name);
      parent = name;
    }
    return names;
  }

  async dispose(): Promise<void> {
    const errors: unknown[] = [];
    for (const dir of this.mounted.reverse()) {
      await unmountAll(dir, MNT.DETACH).catch((e) => errors.push(e));
    }
    this.mounted.length = 0;
    await this.cleanupFixture().catch((e) => errors.push(e));
    await rm(this.work, { recursive: true, force: true }).catch((e) => errors.push(e));
    if (errors.length > 0) throw errors[0];
  }
}

/** Asserts that p rejects with a berth error of this code. */
export async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await expect(p).rejects.toMatchObject({ code });
}

async function writeFails(path: string): Promise<string | undefined> {
  try {
    await writeFile(path, 'testcontent');
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code;
  }
}

async function names(env: SuiteEnv, filters?: string[]): Promise<string[]> {
  const out: string[] = [];
  await env.sn.walk(env.ctx, (info) => void out.push(info.name), filters);
  return out.sort();
}

const comparable = (i: SnapshotInfo) => ({
  kind: i.kind,
  name: i.name,
  parent: i.parent,
  labels: i.labels,
  createdAt: i.createdAt.getTime(),
  updatedAt: i.updatedAt.getTime(),
});

// --- the checks, in containerd's testsuite order ---

async function checkBasic(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  const initial = apply(
    createFile('/foo', 'foo\n', 0o777),
    createDir('/a', 0o755),
    createDir('/a/b', 0o755),
    createDir('/a/b/c', 0o755),
  );
  const diff = apply(
    createFile('/bar', 'bar\n', 0o777),
    createFile('/foo', 'bar\n', 0o777),
    removeAll('/a/b'),
  );

  const preparing = await env.prepareMount('preparing');
  await initial(preparing);
  await env.unmount(preparing);
  await sn.commit(ctx, 'committed', 'preparing', opt);

  const si = await sn.stat(ctx, 'committed');
  expect(si).toMatchObject({ name: 'committed', parent: '', kind: 'committed', labels: opt.labels });
  await expectCode(sn.stat(ctx, 'preparing'), 'ERR_NOT_FOUND');

  const next = await env.prepareMount('nextlayer', 'committed');
  const expected1 = await env.dir('expected');
  await initial(expected1);
  await checkDirectoryEqual(expected1, next);
  await diff(next);
  await env.unmount(next);

  expect(await sn.stat(ctx, 'nextlayer')).toMatchObject({ parent: 'committed', kind: 'active' });
  await sn.commit(ctx, 'committed-next', 'nextlayer', opt);
  const si2 = await sn.stat(ctx, 'committed-next');
  expect(si2).toMatchObject({ parent: 'committed', kind: 'committed' });
  await expectCode(sn.stat(ctx, 'nextlayer'), 'ERR_NOT_FOUND');

  const walked = new Map<string, SnapshotInfo>();
  await sn.walk(ctx, (info) => void walked.set(info.name, info));
  expect(comparable(walked.get('committed')!)).toEqual(comparable(si));
  expect(comparable(walked.get('committed-next')!)).toEqual(comparable(si2));

  const view = await env.mount(await sn.view(ctx, 'nextnextlayer', 'committed-next', opt));
  const expected2 = await env.dir('expected');
  await apply(initial, diff)(expected2);
  await checkDirectoryEqual(expected2, view);
  await env.unmount(view);

  await sn.remove(ctx, 'nextnextlayer');
  const err = await sn.remove(ctx, 'committed').catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
  expect(String((err as Error).message)).toContain('remove');
  await sn.remove(ctx, 'committed-next');
  await sn.remove(ctx, 'committed');
  expect(await names(env)).toEqual([]);
}

async function checkStatActive(env: SuiteEnv): Promise<void> {
  const dir = await env.prepareMount('preparing');
  await writeFile(join(dir, 'foo'), 'foo\n');
  const si = await env.sn.stat(env.ctx, 'preparing');
  expect(si).toMatchObject({ name: 'preparing', kind: 'active', parent: '', labels: env.opt.labels });
}

async function checkStatCommitted(env: SuiteEnv): Promise<void> {
  const dir = await env.prepareMount('preparing');
  await writeFile(join(dir, 'foo'), 'foo\n');
  await env.unmount(dir);
  await env.sn.commit(env.ctx, 'committed', 'preparing', env.opt);
  const si = await env.sn.stat(env.ctx, 'committed');
  expect(si).toMatchObject({ name: 'committed', kind: 'committed', parent: '' });
}

async function checkTransitivity(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  const a = await env.prepareMount('preparing');
  await writeFile(join(a, 'foo'), 'foo\n');
  await env.unmount(a);
  await sn.commit(ctx, 'snapA', 'preparing', opt);
  const b = await env.prepareMount('next', 'snapA');
  await writeFile(join(b, 'foo'), 'foo bar\n');
  await env.unmount(b);
  await sn.commit(ctx, 'snapB', 'next', opt);

  const siA = await sn.stat(ctx, 'snapA');
  const siB = await sn.stat(ctx, 'snapB');
  const siParentB = await sn.stat(ctx, siB.parent);
  expect(siA.parent).toBe('');
  expect(siB.parent).toBe('snapA');
  expect(siParentB.parent).toBe('');
}

async function checkPrepareViewFailing(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  await sn.prepare(ctx, 'preparing', '', opt);
  await sn.commit(ctx, 'snapA', 'preparing', opt);

  // the same key twice, whatever the kind
  await sn.prepare(ctx, 'newlayer', 'snapA', opt);
  await expectCode(sn.view(ctx, 'newlayer', 'snapA', opt), 'ERR_ALREADY_EXISTS');
  await sn.prepare(ctx, 'prepLayer', 'snapA', opt);
  await expectCode(sn.prepare(ctx, 'prepLayer', 'snapA', opt), 'ERR_ALREADY_EXISTS');
  await sn.view(ctx, 'viewLayer', 'snapA', opt);
  await expectCode(sn.view(ctx, 'viewLayer', 'snapA', opt), 'ERR_ALREADY_EXISTS');
  await expectCode(sn.prepare(ctx, 'snapA', '', opt), 'ERR_ALREADY_EXISTS');
  expect(await sn.stat(ctx, 'viewLayer')).toMatchObject({ kind: 'view', parent: 'snapA' });

  // bad parents: missing, active, view (only a committed snapshot can be a parent)
  const before = await names(env);
  await expectCode(sn.prepare(ctx, 'bad', 'missing', opt), 'ERR_NOT_FOUND');
  await expectCode(sn.view(ctx, 'bad', 'missing', opt), 'ERR_NOT_FOUND');
  await expectCode(sn.prepare(ctx, 'bad', 'newlayer', opt), 'ERR_INVALID_ARGUMENT');
  await expectCode(sn.view(ctx, 'bad', 'newlayer', opt), 'ERR_INVALID_ARGUMENT');
  await expectCode(sn.prepare(ctx, 'bad', 'viewLayer', opt), 'ERR_INVALID_ARGUMENT');
  await expectCode(sn.stat(ctx, 'bad'), 'ERR_NOT_FOUND');
  expect(await names(env)).toEqual(before);

  // empty keys and names
  await expectCode(sn.prepare(ctx, '', '', opt), 'ERR_INVALID_ARGUMENT');
  await expectCode(sn.view(ctx, '', 'snapA', opt), 'ERR_INVALID_ARGUMENT');
  await expectCode(sn.commit(ctx, '', 'newlayer', opt), 'ERR_INVALID_ARGUMENT');

  // commit: only an active snapshot, only to a free name
  await expectCode(sn.commit(ctx, 'c', 'missing', opt), 'ERR_NOT_FOUND');
  await expectCode(sn.commit(ctx, 'c', 'viewLayer', opt), 'ERR_FAILED_PRECONDITION');
  await expectCode(sn.commit(ctx, 'c', 'snapA', opt), 'ERR_FAILED_PRECONDITION');
  await expectCode(sn.commit(ctx, 'snapA', 'newlayer', opt), 'ERR_ALREADY_EXISTS');
  await expectCode(sn.commit(ctx, 'viewLayer', 'newlayer', opt), 'ERR_ALREADY_EXISTS');
  expect(await sn.stat(ctx, 'newlayer')).toMatchObject({ kind: 'active' });
  expect(await sn.stat(ctx, 'viewLayer')).toMatchObject({ kind: 'view' });

  // the other calls on keys that do not exist, and mounts of a committed snapshot
  await expectCode(sn.stat(ctx, 'missing'), 'ERR_NOT_FOUND');
  await expectCode(sn.mounts(ctx, 'missing'), 'ERR_NOT_FOUND');
  await expectCode(sn.usage(ctx, 'missing'), 'ERR_NOT_FOUND');
  await expectCode(sn.remove(ctx, 'missing'), 'ERR_NOT_FOUND');
  await expectCode(sn.update(ctx, { name: 'missing', labels: {} }), 'ERR_NOT_FOUND');
  await expectCode(sn.mounts(ctx, 'snapA'), 'ERR_FAILED_PRECONDITION');
  expect((await sn.mounts(ctx, 'newlayer')).length).toBeGreaterThan(0);
  expect((await sn.mounts(ctx, 'viewLayer')).length).toBeGreaterThan(0);
}

async function baseTestSnapshots(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  await sn.prepare(ctx, 'c1-a', '', opt);
  await sn.commit(ctx, 'c1', 'c1-a', opt);
  await sn.prepare(ctx, 'c2-a', 'c1', opt);
  await sn.commit(ctx, 'c2', 'c2-a', opt);
  await sn.prepare(ctx, 'a1', 'c2', opt);
  await sn.prepare(ctx, 'a2', '', opt);
  await sn.view(ctx, 'v1', 'c2', opt);
  await sn.view(ctx, 'v2', '', opt);
}

async function checkUpdate(env: SuiteEnv): Promise<void> {
  const { sn, ctx } = env;
  const t1 = Date.now();
  await baseTestSnapshots(env);
  const t2 = Date.now();
  const cases = [
    { name: 'c1', kind: 'committed', parent: '' },
    { name: 'c2', kind: 'committed', parent: 'c1' },
    { name: 'a1', kind: 'active', parent: 'c2' },
    { name: 'a2', kind: 'active', parent: '' },
    { name: 'v1', kind: 'view', parent: 'c2' },
    { name: 'v2', kind: 'view', parent: '' },
  ];
  for (const tc of cases) {
    let st = await sn.stat(ctx, tc.name);
    expect(st.createdAt.getTime()).toBeGreaterThanOrEqual(t1);
    expect(st.createdAt.getTime()).toBeLessThanOrEqual(t2);
    expect(st.updatedAt.getTime()).toBe(st.createdAt.getTime());
    expect(st).toMatchObject({ name: tc.name, kind: tc.kind, parent: tc.parent });
    const createdAt = st.createdAt.getTime();

    const rootTime = new Date().toISOString();
    let expected: Record<string, string> = {
      l1: 'v1',
      l2: 'v2',
      l3: 'v3',
      'containerd.io/gc.root': rootTime,
    };
    const u1 = Date.now();
    // The parent given in an update is ignored: it is not a label.
    st = await sn.update(ctx, { ...st, parent: 'doesnotexist', labels: expected } as SnapshotInfo);
    const u2 = Date.now();
    expect(st.createdAt.getTime()).toBe(createdAt);
    expect(st.updatedAt.getTime()).toBeGreaterThanOrEqual(u1);
    expect(st.updatedAt.getTime()).toBeLessThanOrEqual(u2);
    expect(st).toMatchObject({ name: tc.name, kind: tc.kind, parent: tc.parent });
    expect(st.labels).toEqual(expected);

    // labels.<key> paths: l1 set, l2 dropped (absent in the update), l4 untouched (not named)
    expected = { l1: 'updated', l3: 'v3', 'containerd.io/gc.root': rootTime };
    st = await sn.update(ctx, { name: tc.name, labels: { l1: 'updated', l4: 'v4' } }, [
      'labels.l1',
      'labels.l2',
    ]);
    expect(st.labels).toEqual(expected);

    expected = { l4: 'v4', 'containerd.io/gc.root': rootTime };
    st = await sn.update(ctx, { name: tc.name, labels: expected }, ['labels']);
    expect(st.labels).toEqual(expected);
    expect((await sn.stat(ctx, tc.name)).labels).toEqual(expected);

    await expectCode(sn.update(ctx, { name: tc.name, labels: {} }, ['parent']), 'ERR_INVALID_ARGUMENT');
    await expectCode(
      sn.update(ctx, { name: tc.name, labels: { big: 'x'.repeat(5000) } }, ['labels.big']),
      'ERR_INVALID_ARGUMENT',
    );
    expect((await sn.stat(ctx, tc.name)).labels).toEqual(expected);
  }
}

async function checkRemove(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  await sn.prepare(ctx, 'committed-a', '', opt);
  await sn.commit(ctx, 'committed-1', 'committed-a', opt);
  await sn.prepare(ctx, 'reuse-1', 'committed-1', opt);
  await expectCode(sn.remove(ctx, 'committed-1'), 'ERR_FAILED_PRECONDITION');
  await sn.remove(ctx, 'reuse-1');
  await expectCode(sn.stat(ctx, 'reuse-1'), 'ERR_NOT_FOUND');
  await expectCode(sn.remove(ctx, 'reuse-1'), 'ERR_NOT_FOUND');
  await sn.view(ctx, 'reuse-1', 'committed-1', opt);
  await expectCode(sn.remove(ctx, 'committed-1'), 'ERR_FAILED_PRECONDITION');
  expect(await sn.stat(ctx, 'committed-1')).toMatchObject({ kind: 'committed' });
  await sn.remove(ctx, 'reuse-1');
  await sn.prepare(ctx, 'reuse-1', '', opt);
  await sn.remove(ctx, 'committed-1');
  await sn.commit(ctx, 'committed-1', 'reuse-1', opt);
  expect(await sn.stat(ctx, 'committed-1')).toMatchObject({ kind: 'committed', parent: '' });
}

async function checkWalk(env: SuiteEnv): Promise<void> {
  const { sn, ctx } = env;
  const opt = { labels: { 'containerd.io/gc.root': 'check-walk' } };
  const withL = (l: string) => ({ labels: { l, 'containerd.io/gc.root': 'check-walk' } });
  await sn.prepare(ctx, 'a-np', '', opt);
  await sn.prepare(ctx, 'p-tmp', '', opt);
  await sn.commit(ctx, 'p', 'p-tmp', opt);
  await sn.prepare(ctx, 'a', 'p', opt);
  await sn.view(ctx, 'v', 'p', opt);
  await sn.prepare(ctx, 'p-wl-tmp', '', opt);
  await sn.commit(ctx, 'p-wl', 'p-wl-tmp', withL('1'));
  await sn.prepare(ctx, 'a-wl', 'p-wl', withL('2'));
  await sn.view(ctx, 'v-wl', 'p-wl', withL('3'));
  await sn.prepare(ctx, 'a-np-wl', '', withL('2'));

  const cases: [string[], string[]][] = [
    [
      ['a-np', 'p', 'a', 'v', 'p-wl', 'a-wl', 'v-wl', 'a-np-wl'],
      ['labels."containerd.io/gc.root"==check-walk'],
    ],
    [['a-np', 'a', 'a-wl', 'a-np-wl'], ['kind==active,labels."containerd.io/gc.root"==check-walk']],
    [['v', 'v-wl'], ['kind==view,labels."containerd.io/gc.root"==check-walk']],
    [['p', 'p-wl'], ['kind==committed,labels."containerd.io/gc.root"==check-walk']],
    [
      ['p', 'a-np-wl'],
      ['name==p', 'name==a-np-wl'],
    ],
    [['a-wl'], ['name==a-wl,labels.l']],
    [['a', 'v'], ['parent==p']],
    [['a', 'v', 'a-wl', 'v-wl'], ['parent!="",labels."containerd.io/gc.root"==check-walk']],
    [['p-wl', 'a-wl', 'v-wl', 'a-np-wl'], ['labels.l']],
    [['a-wl', 'a-np-wl'], ['labels.l==2']],
    [['a-wl', 'a-np-wl', 'v-wl'], ['labels.l~=^[23]$']],
    [[], ['name==nothing-is-called-this']],
  ];
  for (const [want, filters] of cases) {
    expect({ filters, got: await names(env, filters) }).toEqual({ filters, got: [...want].sort() });
  }
  await expectCode(names(env, ['kind==']), 'ERR_INVALID_ARGUMENT');
}

async function checkLayerFileUpdate(env: SuiteEnv): Promise<void> {
  await env.checkSnapshots([
    apply(
      createDir('/etc', 0o700),
      createFile('/etc/hosts', 'mydomain 10.0.0.1', 0o644),
      createFile('/etc/profile', 'PATH=/usr/bin', 0o644),
    ),
    apply(
      createFile('/etc/hosts', 'mydomain 10.0.0.2', 0o644),
      createFile('/etc/profile', 'PATH=/usr/bin', 0o666),
      createDir('/root', 0o700),
      createFile('/root/.bashrc', 'PATH=/usr/sbin:/usr/bin', 0o644),
    ),
  ]);
}

async function checkRemoveDirectoryInLowerLayer(env: SuiteEnv): Promise<void> {
  await env.checkSnapshots([
    apply(createDir('/lib', 0o700), createFile('/lib/hidden', '', 0o644)),
    apply(removeAll('/lib'), createDir('/lib', 0o700), createFile('/lib/not-hidden', '', 0o644)),
    apply(createFile('/lib/newfile', '', 0o644)),
  ]);
}

async function checkChown(env: SuiteEnv): Promise<void> {
  await env.checkSnapshots([
    apply(
      createDir('/opt', 0o700),
      createDir('/opt/a', 0o700),
      createDir('/opt/a/b', 0o700),
      createFile('/opt/a/b/file.txt', 'hello', 0o644),
    ),
    apply(
      chown('/opt', 1, 1),
      chown('/opt/a', 1, 1),
      chown('/opt/a/b', 1, 1),
      chown('/opt/a/b/file.txt', 1, 1),
    ),
  ]);
}

async function checkDirectoryPermissionOnCommit(env: SuiteEnv): Promise<void> {
  await env.checkSnapshots([
    apply(
      createDir('/dir1', 0o700),
      createDir('/dir2', 0o700),
      createDir('/dir3', 0o700),
      createDir('/dir4', 0o700),
      createFile('/dir4/f1', '...', 0o644),
      createDir('/dir5', 0o700),
      createFile('/dir5/f1', '...', 0o644),
      chown('/dir1', 1, 1),
      chown('/dir2', 1, 1),
      chown('/dir3', 1, 1),
      chown('/dir5', 1, 1),
      chown('/dir5/f1', 1, 1),
    ),
    apply(chown('/dir2', 0, 0), removeAll('/dir3'), chown('/dir4', 1, 1), chown('/dir4/f1', 1, 1)),
    apply(
      createDir('/dir3', 0o700),
      chown('/dir3', 1, 1),
      removeAll('/dir5'),
      createDir('/dir5', 0o700),
      chown('/dir5', 1, 1),
    ),
  ]);
}

async function checkRemoveIntermediateSnapshot(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  const base = await env.prepareMount('base');
  await sn.commit(ctx, 'committed-base', 'base', opt);
  await sn.prepare(ctx, 'intermediate', 'committed-base', opt);
  await sn.commit(ctx, 'committed-inter', 'intermediate', opt);
  await sn.prepare(ctx, 'toplayer', 'committed-inter', opt);
  await expectCode(sn.remove(ctx, 'committed-inter'), 'ERR_FAILED_PRECONDITION');
  await expectCode(sn.remove(ctx, 'committed-base'), 'ERR_FAILED_PRECONDITION');
  await sn.remove(ctx, 'toplayer');
  await sn.remove(ctx, 'committed-inter');
  await env.unmount(base);
  await sn.remove(ctx, 'committed-base');
  expect(await names(env)).toEqual([]);
}

async function checkDeletedFilesInChildSnapshot(env: SuiteEnv): Promise<void> {
  await env.checkSnapshots([
    apply(createFile('/foo', 'foo\n', 0o777), createFile('/foobar', 'foobar\n', 0o777)),
    apply(removeAll('/foobar')),
    apply(),
  ]);
}

async function checkFileFromLowerLayer(env: SuiteEnv): Promise<void> {
  await env.checkSnapshots([
    apply(
      createDir('/dir1', 0o700),
      createFile('/dir1/f1', 'Hello', 0o644),
      createDir('/dir2', 0o700),
      createFile('/dir2/f2', '...', 0o644),
    ),
    apply(
      createDir('/dir3', 0o700),
      createFile('/dir3/f1', 'Hello', 0o644),
      removeAll('/dir1'),
      link('/dir2/f2', '/dir3/f2'),
      removeAll('/dir2/f2'),
    ),
  ]);
}

async function checkRename(env: SuiteEnv): Promise<void> {
  await env.checkSnapshots([
    apply(
      createDir('/dir1', 0o700),
      createDir('/somefiles', 0o700),
      createFile('/somefiles/f1', 'was here first!', 0o644),
      createFile('/somefiles/f2', 'nothing interesting', 0o644),
    ),
    apply(
      rename('/dir1', '/dir2'),
      createFile('/somefiles/f1-overwrite', 'new content 1', 0o644),
      rename('/somefiles/f1-overwrite', '/somefiles/f1'),
      rename('/somefiles/f2', '/somefiles/f3'),
    ),
  ]);
}

async function checkViewReadonly(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  await sn.prepare(ctx, 'preparing', '', opt);
  await sn.commit(ctx, 'committed', 'preparing', opt);
  await env.applyToMounts(await sn.prepare(ctx, 'second', 'committed', opt), createFile('/f', 'x', 0o644));
  await sn.commit(ctx, 'committed2', 'second', opt);

  // a view of one layer, of several layers, and of nothing
  for (const [view, parent] of [
    ['view', 'committed'],
    ['view2', 'committed2'],
    ['view0', ''],
  ] as const) {
    const dir = await env.mount(await sn.view(ctx, view, parent, opt));
    expect({ view, code: await writeFails(join(dir, 'testfile')) }).toEqual({ view, code: 'EROFS' });
    if (parent === 'committed2') {
      expect({ view, code: await writeFails(join(dir, 'f')) }).toEqual({ view, code: 'EROFS' });
    }
    await env.unmount(dir);
    await sn.remove(ctx, view);
  }
  await sn.remove(ctx, 'committed2');
  await sn.remove(ctx, 'committed');
}

async function checkStatInWalk(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  const prefix = 'stats-in-walk-';
  await sn.prepare(ctx, `${prefix}c1-a`, '', opt);
  await sn.commit(ctx, `${prefix}c1`, `${prefix}c1-a`, opt);
  await sn.prepare(ctx, `${prefix}c2-a`, `${prefix}c1`, opt);
  await sn.commit(ctx, `${prefix}c2`, `${prefix}c2-a`, opt);
  await sn.prepare(ctx, `${prefix}a1`, `${prefix}c2`, opt);
  await sn.view(ctx, `${prefix}v1`, `${prefix}c2`, opt);
  let seen = 0;
  await sn.walk(ctx, async (si) => {
    if (!si.name.startsWith(prefix)) return;
    seen++;
    expect(comparable(await sn.stat(ctx, si.name))).toEqual(comparable(si));
  });
  expect(seen).toBe(4);
}

async function checkCloseTwice(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  const n = `closeTwice-${randomBytes(4).toString('hex')}`;
  await sn.prepare(ctx, `${n}-prepare`, '', opt);
  await sn.commit(ctx, n, `${n}-prepare`, opt);
  await sn.remove(ctx, n);
  await sn.close();
  await sn.close();
}

async function checkRootPermission(env: SuiteEnv): Promise<void> {
  const dir = await env.prepareMount('preparing');
  expect(((await stat(dir)).mode & 0o777).toString(8)).toBe('755');
}

async function check128LayersMount(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  const appliers: Applier[] = [
    apply(
      createFile('/bottom', 'way at the bottom\n', 0o777),
      createFile('/overwriteme', 'FIRST!\n', 0o777),
      createDir('/ADDHERE', 0o755),
      createDir('/ONLYME', 0o755),
      createFile('/ONLYME/bottom', 'bye!\n', 0o777),
    ),
  ];
  for (let i = 1; i <= 127; i++) {
    appliers.push(
      apply(
        createFile('/overwriteme', `${i} WAS HERE!\n`, 0o777),
        createFile(`/ADDHERE/file-${i}`, 'same\n', 0o755),
        removeAll('/ONLYME'),
        createDir('/ONLYME', 0o755),
        createFile(`/ONLYME/file-${i}`, 'only me!\n', 0o777),
      ),
    );
  }
  const flat = await env.dir('flat');
  let parent = '';
  for (const [i, a] of appliers.entries()) {
    const key = `prepare-layer-${i}`;
    const dir = await env.mount(await sn.prepare(ctx, key, parent, opt));
    try {
      await checkDirectoryEqual(flat, dir);
      await a(flat);
      await a(dir);
      await checkDirectoryEqual(flat, dir);
    } catch (e) {
      throw new Error(`layer ${i}: ${(e as Error).message}`, { cause: e });
    }
    await env.unmount(dir);
    parent = `committed-${i}`;
    await sn.commit(ctx, parent, key, opt);
  }
  const view = await env.mount(await sn.view(ctx, 'fullview', parent, opt));
  await checkDirectoryEqual(flat, view);
}

/** Not in containerd's list: what a layer is made of besides plain files and directories. */
async function checkSpecialFiles(env: SuiteEnv): Promise<void> {
  const when = Date.UTC(2001, 1, 3, 4, 5, 6) / 1000;
  const times = (...paths: string[]) => apply(...paths.map((p) => setTimes(p, when, when + 1)));
  await env.checkSnapshots(
    [
      apply(
        createDir('/dir', 0o1777),
        createFile('/dir/setuid', '#!/bin/sh\n', 0o4755),
        createFile('/dir/setgid', 'g', 0o644),
        chown('/dir/setgid', 0, 1),
        chmodPath('/dir/setgid', 0o2750),
        createFile('/dir/linked', 'one inode, two names', 0o640),
        link('/dir/linked', '/dir/hardlink'),
        symlink('linked', '/dir/symlink'),
        symlink('/nowhere/at/all', '/dangling'),
        mkfifo('/dir/fifo', 0o600),
        mkchardev('/dir/null', 0o666, 1, 3),
        setXattr('/dir/linked', 'user.berth.test', 'value one'),
        setXattr('/dir', 'trusted.berth.test', 'dir value'),
        times(
          '/dir/setuid',
          '/dir/setgid',
          '/dir/linked',
          '/dir/symlink',
          '/dangling',
          '/dir/fifo',
          '/dir/null',
        ),
      ),
      apply(
        createFile('/dir/new', 'added on top', 0o600),
        setXattr('/dir/setuid', 'user.berth.more', 'two'),
        times('/dir/new', '/dir/setuid'),
      ),
    ],
    { mtimes: true },
  );
}

/** A layer's root keeps the owner its parent's root had (containerd chowns the new upper directory). */
async function checkParentRootOwnership(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  await env.applyToMounts(await sn.prepare(ctx, 'owned', '', opt), chown('/', 1, 2));
  await sn.commit(ctx, 'owned-committed', 'owned', opt);
  const dir = await env.prepareMount('child', 'owned-committed');
  const st = await stat(dir);
  expect({ uid: st.uid, gid: st.gid }).toEqual({ uid: 1, gid: 2 });
}

/** A write into an active snapshot shows in its usage; usage of what does not exist is NotFound. */
async function checkUsage(env: SuiteEnv): Promise<void> {
  const { sn, ctx, opt } = env;
  const dir = await env.prepareMount('usage');
  const before = await sn.usage(ctx, 'usage');
  await writeFile(join(dir, 'big'), Buffer.alloc(1 << 20, 1));
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub', 'small'), 'x');
  const after = await sn.usage(ctx, 'usage');
  expect(after.size - before.size).toBeGreaterThanOrEqual(1 << 20);
  expect(after.inodes - before.inodes).toBe(3);
  await env.unmount(dir);
  await sn.commit(ctx, 'usage-committed', 'usage', opt);
  expect(await sn.usage(ctx, 'usage-committed')).toEqual(after);
}

/**
 * Runs containerd's snapshotter conformance checks (and a few of berth's own) against a
 * snapshotter from factory, one fresh instance per test. Everything goes through the
 * Snapshotter interface and the Mount[] it returns, mounted here with @berth/sys, so the
 * snapshotter may live in another process (needs root for the mounts).
 */
export function runSnapshotterSuite(
  name: string,
  factory: SnapshotterFactory,
  opts: SnapshotterSuiteOptions = {},
): void {
  const skip = new Set(opts.skip ?? []);
  describe(`${name} snapshotter conformance`, () => {
    let env: SuiteEnv | undefined;

    beforeEach(async () => {
      const parent = opts.workDir ?? tmpdir();
      await access(parent);
      const work = await mkdtemp(join(parent, `snapshot-suite-${name}-`));
      try {
        const fx = await factory();
        env = new SuiteEnv(fx.snapshotter, fx.ctx, work, fx.cleanup);
      } catch (e) {
        await rm(work, { recursive: true, force: true });
        throw e;
      }
    });

    afterEach(async () => {
      const e = env;
      env = undefined;
      await e?.dispose();
    });

    const cases: [string, (env: SuiteEnv) => Promise<void>, number?][] = [
      ['Basic', checkBasic],
      ['StatActive', checkStatActive],
      ['StatCommitted', checkStatCommitted],
      ['Transitivity', checkTransitivity],
      ['PrepareViewFailing', checkPrepareViewFailing],
      ['Update', checkUpdate],
      ['Remove', checkRemove],
      ['Walk', checkWalk],
      ['LayerFileUpdate', checkLayerFileUpdate],
      ['RemoveDirectoryInLowerLayer', checkRemoveDirectoryInLowerLayer],
      ['Chown', checkChown],
      ['DirectoryPermissionOnCommit', checkDirectoryPermissionOnCommit],
      ['RemoveIntermediateSnapshot', checkRemoveIntermediateSnapshot],
      ['DeletedFilesInChildSnapshot', checkDeletedFilesInChildSnapshot],
      ['MoveFileFromLowerLayer', checkFileFromLowerLayer],
      ['Rename', checkRename],
      ['ViewReadonly', checkViewReadonly],
      ['StatInWalk', checkStatInWalk],
      ['CloseTwice', checkCloseTwice],
      ['RootPermission', checkRootPermission],
      ['128LayersMount', check128LayersMount, 300_000],
      ['SpecialFiles', checkSpecialFiles],
      ['ParentRootOwnership', checkParentRootOwnership],
      ['Usage', checkUsage],
    ];
    for (const [title, fn, timeout] of cases) {
      (skip.has(title) ? test.skip : test)(title, () => fn(env!), timeout);
    }
  });
}
