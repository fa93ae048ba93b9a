/**
 * The full-disk rules that need no small file system (the rest is
 * packages/daemon/test/full-disk.e2e.test.ts, on a real full ext4 and tmpfs).
 */
import { existsSync, statSync } from 'node:fs';
import { isNoSpace, NoSpaceError, retryOnFullDisk, type SpaceReserve } from '@berth/api';
import { errorOf, type Fixture, fixture, ns } from './helpers';

const full = () => Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });

describe('a full disk', () => {
  describe('retryOnFullDisk', () => {
    const reserve = { held: true, released: 0 } as unknown as SpaceReserve & { released: number };
    beforeEach(() => {
      Object.assign(reserve, { held: true, released: 0 });
      (reserve as { release: () => boolean }).release = () => {
        (reserve as { released: number }).released++;
        (reserve as { held: boolean }).held = false;
        return true;
      };
    });

    it('retries after a checkpoint, then after releasing the reserve, then names the file', () => {
      const seen: string[] = [];
      let calls = 0;
      const err = (() => {
        try {
          return retryOnFullDisk(
            'lease delete "x"',
            () => {
              calls++;
              throw full();
            },
            { path: '/r/meta.db', reserve, checkpoint: () => seen.push('checkpoint') },
          );
        } catch (e) {
          return e;
        }
      })();
      expect(calls).toBe(3);
      expect(seen).toEqual(['checkpoint', 'checkpoint']);
      expect(reserve.released).toBe(1);
      expect(isNoSpace(err)).toBe(true);
      expect((err as NoSpaceError).code).toBe('ERR_UNKNOWN');
      expect((err as NoSpaceError).path).toBe('/r/meta.db');
      expect((err as Error).message).toBe(
        'lease delete "x": write /r/meta.db: no space left on device (database or disk is full)',
      );
    });

    it('keeps the reserve for writes that do not free space, and stops at the first success', () => {
      let calls = 0;
      expect(() =>
        retryOnFullDisk(
          'lease create "x"',
          () => {
            calls++;
            throw full();
          },
          { path: '/r/meta.db', reserve, mayUseReserve: () => false, checkpoint: () => {} },
        ),
      ).toThrow(NoSpaceError);
      expect(calls).toBe(2);
      expect(reserve.released).toBe(0);

      calls = 0;
      const v = retryOnFullDisk(
        'w',
        () => {
          if (++calls === 1) throw full();
          return 'ok';
        },
        { path: '/r/meta.db', reserve, checkpoint: () => {} },
      );
      expect(v).toBe('ok');
      expect(reserve.released).toBe(0);
    });

    it('passes any other error through untouched, at once', () => {
      let calls = 0;
      const other = Object.assign(new Error('constraint'), { code: 'SQLITE_CONSTRAINT' });
      expect(() =>
        retryOnFullDisk(
          'w',
          () => {
            calls++;
            throw other;
          },
          { path: '/r/meta.db', reserve, checkpoint: () => {} },
        ),
      ).toThrow(other);
      expect(calls).toBe(1);
    });
  });

  describe('the reserve of a metadata database', () => {
    let f: Fixture;
    afterEach(() => f.cleanup());

    it('is written out next to the file at open, and is not sparse', () => {
      f = fixture({ reserveBytes: 1 << 20 });
      const st = statSync(`${f.path}.reserve`);
      expect(st.size).toBe(1 << 20);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(1 << 20);
      expect(f.db.reserve?.held).toBe(true);
    });

    it('while it cannot be made (the disk is full), only transactions that delete commit', async () => {
      // More than half of any disk here: the reserve cannot be made, as on a full disk.
      f = fixture({ reserveBytes: 2 ** 50 });
      expect(existsSync(`${f.path}.reserve`)).toBe(false);
      const err = await errorOf(() => f.db.leases.create(ns('a'), { id: 'new' }));
      expect(isNoSpace(err)).toBe(true);
      expect(err.message).toBe(
        `metadata lease create "new": the disk holding ${f.path} is full (its space reserve is spent): only deletions are accepted until space is freed`,
      );
      expect(await f.db.leases.list(ns('a'))).toEqual([]);

      // A lease made before the disk filled can still be deleted.
      const g = fixture();
      try {
        await g.db.leases.create(ns('a'), { id: 'old' });
        await g.db.close();
        const db = g.open({ reserveBytes: 2 ** 50 });
        await db.leases.delete(ns('a'), 'old');
        expect(await db.leases.list(ns('a'))).toEqual([]);
      } finally {
        await g.cleanup();
      }
    });

    it('is made again by a collection once there is room', async () => {
      f = fixture({ reserveBytes: 1 << 20 });
      const reserve = f.db.reserve!;
      // As retryOnFullDisk does when a delete needs the room.
      expect(reserve.release()).toBe(true);
      (f.db as unknown as { reserveSpent: boolean }).reserveSpent = true;
      expect(reserve.held).toBe(false);
      await f.db.collectGarbage();
      expect(reserve.held).toBe(true);
      // And writes are accepted again.
      await f.db.leases.create(ns('a'), { id: 'after' });
    });
  });
});
