/** What the quota snapshotter adds over any snapshotter: the quota, where layers live, restarts. Needs root. */
import { existsSync } from 'node:fs';
import { mkdir, readFile, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempMount } from '@berth/sys';
import { QUOTA_LABEL, QuotaSnapshotter } from '../src';
import { mountsUnder, tempRoot } from './helpers';

const ctx = {};
const MiB = 1 << 20;
const TMPFS_MAGIC = 0x01021994;

let root: string;
let remove: () => Promise<void>;
let sn: QuotaSnapshotter;

beforeEach(async () => {
  ({ root, remove } = await tempRoot('quota-specific'));
  sn = await QuotaSnapshotter.open(root, { size: 4 * MiB });
});
afterEach(async () => {
  await sn.close();
  await remove();
});

/** Writes `bytes` zeroes into name inside the snapshot's mount; the error code when refused. */
async function fill(key: string, name: string, bytes: number): Promise<string | undefined> {
  return withTempMount(await sn.mounts(ctx, key), async (dir) => {
    try {
      await writeFile(join(dir, name), Buffer.alloc(bytes, 1));
      return undefined;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code;
    }
  });
}

test('a write past the quota gets ENOSPC, and the filled layer is not committed', async () => {
  await sn.prepare(ctx, 'big');
  expect(await fill('big', 'ok', 3 * MiB)).toBeUndefined();
  expect(await fill('big', 'too-much', 2 * MiB)).toBe('ENOSPC');
  await expect(sn.commit(ctx, 'big-c', 'big')).rejects.toMatchObject({
    code: 'ERR_RESOURCE_EXHAUSTED',
    message: expect.stringMatching(
      /^snapshot big filled its quota \(4194304 bytes\).*not committing it as big-c$/,
    ),
  });
  expect((await sn.stat(ctx, 'big')).kind).toBe('active');
  // Making room again makes the layer committable: the check is on what the layer holds.
  await withTempMount(await sn.mounts(ctx, 'big'), async (dir) => {
    await writeFile(join(dir, 'too-much'), '');
  });
  await sn.commit(ctx, 'big-c', 'big');
  expect((await sn.usage(ctx, 'big-c')).size).toBeGreaterThanOrEqual(3 * MiB);
});

test('a label gives one snapshot its own quota; a bad one is InvalidArgument and leaves nothing behind', async () => {
  await sn.prepare(ctx, 'small', '', { labels: { [QUOTA_LABEL]: String(MiB) } });
  await sn.prepare(ctx, 'default');
  expect(await fill('small', 'f', 2 * MiB)).toBe('ENOSPC');
  expect(await fill('default', 'f', 2 * MiB)).toBeUndefined();
  await expect(sn.prepare(ctx, 'bad', '', { labels: { [QUOTA_LABEL]: '1G' } })).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
    message: `label ${QUOTA_LABEL} of snapshot "bad" = "1G": expected a size in bytes, at least 4096`,
  });
  await expect(sn.stat(ctx, 'bad')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  expect(mountsUnder(root)).toHaveLength(2);
});

test('writable layers are tmpfs mounts, committed layers plain directories; removal unmounts', async () => {
  const [m] = await sn.prepare(ctx, 'a');
  const upper = m!.source;
  expect((await statfs(upper)).type).toBe(TMPFS_MAGIC);
  await fill('a', 'file', 1000);
  await sn.commit(ctx, 'c', 'a');
  expect(mountsUnder(root)).toEqual([]);
  const [v] = await sn.view(ctx, 'v', 'c');
  expect(v).toMatchObject({ type: 'bind', options: ['rbind', 'ro'] });
  expect(v!.source.startsWith(join(root, 'layers'))).toBe(true);
  expect((await statfs(v!.source)).type).not.toBe(TMPFS_MAGIC);
  expect(await readFile(join(v!.source, 'file'))).toHaveLength(1000);

  await sn.prepare(ctx, 'b', 'c');
  expect(mountsUnder(root)).toHaveLength(1);
  await sn.remove(ctx, 'b');
  expect(mountsUnder(root)).toEqual([]);
});

test('reopened, it keeps its records and the writable layers’ data; cleanup removes orphans', async () => {
  await sn.prepare(ctx, 'base-a');
  await fill('base-a', 'f', 10);
  await sn.commit(ctx, 'base', 'base-a', { labels: { x: 'y' } });
  await sn.prepare(ctx, 'work', 'base');
  await fill('work', 'scratch', 123);
  await sn.close();
  await expect(sn.stat(ctx, 'base')).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });

  sn = await QuotaSnapshotter.open(root, { size: 4 * MiB });
  expect(await sn.stat(ctx, 'base')).toMatchObject({ kind: 'committed', labels: { x: 'y' } });
  expect(
    await withTempMount(await sn.mounts(ctx, 'work'), (dir) => readFile(join(dir, 'scratch'), 'utf8')),
  ).toBe('\u0001'.repeat(123));
  await mkdir(join(root, 'layers', '999', 'fs'), { recursive: true });
  await sn.cleanup(ctx);
  expect(existsSync(join(root, 'layers', '999'))).toBe(false);
  expect((await sn.usage(ctx, 'base')).inodes).toBe(2);
});

test('open refuses a quota that is not a size', async () => {
  await expect(QuotaSnapshotter.open(root, { size: -1 })).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
    message: 'size = -1: expected a size in bytes, at least 4096',
  });
});
