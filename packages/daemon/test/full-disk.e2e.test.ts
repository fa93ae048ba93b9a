/**
 * A full disk is survivable: berthd on a small ext4 (loop-mounted, 4 KiB blocks) as its
 * --root, filled through the stock ctr until writes fail. The failure names the file and
 * answers Unknown, as containerd does; no committed blob is bad; deletes and collection
 * still work, so the space comes back and the next ingest, import and unpack work, both
 * without a restart and after a restart on the still-full disk.
 */

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildImage,
  busyboxInstalled,
  canMountSmallFilesystem,
  containerdInstalled,
  ctr,
  type Daemon,
  eventually,
  file,
  fillMetadataWithLeases,
  fillWithIngests,
  fullDiskRound,
  type SmallFilesystem,
  startBerthd,
  startContainerd,
  verifyBlobs,
  withSmallFilesystem,
  writeOciLayout,
} from '@berth/testkit';

const describeIf = canMountSmallFilesystem() ? describe : describe.skip;
const MiB = 1 << 20;

async function ok(address: string, args: string[], input?: Buffer): Promise<string> {
  const r = await ctr(address, args, { input, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const ingestOne = (address: string, ref: string, size = 4 * MiB) =>
  ctr(address, ['content', 'ingest', ref], { input: randomBytes(size) });

/** A daemon whose --root is on `fs`, its socket and state in a temp dir beside it. */
async function start(kind: 'berthd' | 'containerd', fs: SmallFilesystem, dir: string): Promise<Daemon> {
  const opts = { dir, root: join(fs.dir, 'root') };
  return kind === 'berthd' ? startBerthd(opts) : startContainerd(opts);
}

/** Runs fn with a daemon on a fresh small file system; stops it before the unmount. */
async function onSmallDisk(
  kind: 'berthd' | 'containerd',
  sizeMiB: number,
  fn: (d: { daemon: () => Daemon; restart: () => Promise<void>; fs: SmallFilesystem }) => Promise<void>,
): Promise<void> {
  await withSmallFilesystem(sizeMiB, async (fs) => {
    const dir = mkdtempSync(join(tmpdir(), `full-disk-${kind}-`));
    let daemon = await start(kind, fs, dir);
    try {
      await fn({
        daemon: () => daemon,
        restart: async () => {
          await daemon.stop();
          daemon = await start(kind, fs, dir);
        },
        fs,
      });
    } catch (e) {
      (e as Error).message += `\n--- ${kind} log (tail) ---\n${daemon.logs().slice(-4000)}`;
      throw e;
    } finally {
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** What containerd prints for a full disk during a write: the file, ENOSPC, code Unknown. */
const INGEST_ENOSPC =
  /write (\/\S+\/io\.containerd\.content\.v1\.content\/ingest\/[0-9a-f]+\/data): no space left on device: unknown/;

describeIf('a full disk is survivable', () => {
  jest.setTimeout(300_000);

  const daemons: ('berthd' | 'containerd')[] = containerdInstalled() ? ['containerd', 'berthd'] : ['berthd'];

  test.each(daemons)(
    '%s: an ingest that fills the disk names the file, commits no bad blob, and deletes free the space',
    async (kind) => {
      await onSmallDisk(kind, 64, async ({ daemon, fs }) => {
        const address = daemon().address;
        const fill = await fillWithIngests(address, { blobMiB: 8 });
        expect(fill.committed.length).toBeGreaterThanOrEqual(3);
        const m = INGEST_ENOSPC.exec(fill.failed.stderr);
        expect(m).not.toBeNull();
        expect(m![1]!.startsWith(fs.dir)).toBe(true);
        // berthd also says which ingest, by the client's ref.
        if (kind === 'berthd')
          expect(fill.failed.stderr).toContain(`ingest ref "${fill.failed.ref}": write `);

        const blobs = await verifyBlobs(address);
        expect(blobs.bad).toEqual([]);
        expect(blobs.checked.sort()).toEqual([...fill.committed].sort());

        // Deleting needs no new space; the collector frees the blobs.
        const before = fs.free();
        await ok(address, ['content', 'rm', ...fill.committed]);
        expect(await eventually(() => fs.free() >= before + fill.committed.length * 8 * MiB - MiB)).toBe(
          true,
        );
        const again = await ingestOne(address, 'after-free', 8 * MiB);
        expect(again.stderr).toBe('');
        expect(again.code).toBe(0);
        expect((await verifyBlobs(address)).bad).toEqual([]);
      });
    },
  );

  test('berthd: a metadata write on a full disk names the operation and meta.db; deletes commit, without and after a restart', async () => {
    await onSmallDisk('berthd', 64, async ({ daemon, restart, fs }) => {
      const metaDb = join(fs.dir, 'root', 'io.containerd.metadata.v1.sqlite', 'meta.db');
      for (const round of ['live', 'restarted']) {
        const address = daemon().address;
        const fill = await fillWithIngests(address, { blobMiB: 8, prefix: `blob-${round}` });
        const leases = await fillMetadataWithLeases(address, { prefix: `lease-${round}` });
        expect(leases.failed.stderr).toContain(
          `metadata lease create "${leases.failed.id}": write ${metaDb}: no space left on device`,
        );
        expect(leases.failed.stderr).toMatch(/: unknown\s*$/);
        expect((await verifyBlobs(address)).bad).toEqual([]);

        if (round === 'restarted') {
          // berthd must start on a full disk, or nothing could ever be freed through it.
          await restart();
          // With its snapshotters: the overlay trial mount needs a few directories.
          const plugins = await ok(daemon().address, ['plugins', 'ls']);
          expect(plugins).toMatch(/io\.containerd\.snapshotter\.v1\s+overlayfs\s+\S+\s+ok/);
        }
        const addr = daemon().address;
        const before = fs.free();
        await ok(addr, ['leases', 'rm', ...leases.created]);
        await ok(addr, ['content', 'rm', ...fill.committed]);
        expect(await eventually(() => fs.free() >= before + fill.committed.length * 8 * MiB - 8 * MiB)).toBe(
          true,
        );
        expect(await ok(addr, ['leases', 'ls', '-q'])).toBe('');
        expect(await ok(addr, ['content', 'ls', '-q'])).toBe('');
        // Space is back: writes work again, metadata and data alike.
        await ok(addr, ['leases', 'create', '--id', `after-${round}`]);
        await ok(addr, ['leases', 'rm', `after-${round}`]);
        const again = await ingestOne(addr, `after-${round}`);
        expect(again.stderr).toBe('');
        expect((await verifyBlobs(addr)).bad).toEqual([]);
        await ok(addr, [
          'content',
          'rm',
          ...(await ok(addr, ['content', 'ls', '-q'])).split('\n').filter(Boolean),
        ]);
      }
    });
  });

  test('berthd on a tmpfs: fullDiskRound (what the torture suite calls) passes three times in a row', async () => {
    await withSmallFilesystem(
      48,
      async (fs) => {
        const dir = mkdtempSync(join(tmpdir(), 'full-disk-tmpfs-'));
        const daemon = await startBerthd({ dir, root: join(fs.dir, 'root') });
        try {
          for (const round of [1, 2, 3]) {
            const r = await fullDiskRound(daemon.address, fs.free, { metadata: true, prefix: `r${round}` });
            expect(r.committed).toBeGreaterThanOrEqual(2);
            expect(r.ingestError).toMatch(INGEST_ENOSPC);
            expect(r.metadataError).toMatch(
              /metadata lease create "r\d-lease-\d+": write \S+\/meta\.db: no space left on device/,
            );
            expect(r.bad).toEqual([]);
          }
        } finally {
          await daemon.stop();
          rmSync(dir, { recursive: true, force: true });
        }
      },
      { kind: 'tmpfs' },
    );
  });

  const runIf = busyboxInstalled() ? test : test.skip;
  runIf(
    'berthd: an unpack that fills the disk leaves no half snapshot; after freeing, the same import runs',
    async () => {
      const work = mkdtempSync(join(tmpdir(), 'full-disk-image-'));
      try {
        const image = buildImage({
          layers: ['busybox', [file('big', randomBytes(32 * MiB))]],
          config: { Cmd: ['/bin/true'] },
        });
        const archive = join(work, 'image.tar');
        const ref = 'docker.io/library/full-disk:1';
        writeOciLayout(archive, image, ref);
        await onSmallDisk('berthd', 96, async ({ daemon, fs }) => {
          const address = daemon().address;
          // Leave room for the blobs (33 MiB) but not for their unpacked copy too.
          const fillers: string[] = [];
          while (fs.free() > 62 * MiB) {
            const r = await ingestOne(address, `filler-${fillers.length}`, 4 * MiB);
            expect(r.code).toBe(0);
            const [digest] = (await ok(address, ['content', 'ls', '-q']))
              .split('\n')
              .filter((d) => !fillers.includes(d) && d);
            await ok(address, ['content', 'label', digest!, 'containerd.io/gc.root=filler']);
            fillers.push(digest!);
          }
          const failed = await ctr(address, ['images', 'import', archive], { timeoutMs: 120_000 });
          expect(failed.code).not.toBe(0);
          expect(failed.stderr).toMatch(
            /io\.containerd\.snapshotter\.v1\.overlayfs\/snapshots\/\S+: no space left on device/,
          );
          // No snapshot half-applied: only committed layers (the busybox one may be there).
          const snaps = (await ok(address, ['snapshots', 'ls'])).split('\n').slice(1).filter(Boolean);
          expect(snaps.filter((l) => !/\sCommitted\s*$/.test(l))).toEqual([]);
          expect((await verifyBlobs(address)).bad).toEqual([]);

          // Free: the fillers and whatever the failed import left, then the same import.
          await ctr(address, ['images', 'rm', ref]);
          await ok(address, ['content', 'rm', ...fillers]);
          expect(await eventually(() => fs.free() > 70 * MiB)).toBe(true);
          const out = await ok(address, ['images', 'import', archive]);
          expect(out).toContain(`unpacking ${ref}`);
          const committed = (await ok(address, ['snapshots', 'ls']))
            .split('\n')
            .filter((l) => /\sCommitted\s*$/.test(l));
          expect(committed).toHaveLength(2);
          expect((await verifyBlobs(address)).bad).toEqual([]);
          const ran = await ctr(address, ['run', '--rm', ref, 'full-disk-run', '/bin/true'], {
            timeoutMs: 60_000,
          });
          expect(ran.stderr).toBe('');
          expect(ran.code).toBe(0);
        });
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
  );
});
