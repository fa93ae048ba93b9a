import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestOf } from '@berth/api';
import { openLocalStore } from '@berth/content';
import { runContentStoreSuite } from '@berth/content/testing';
import { type MetadataDBOptions, openMetadataDB } from '../src';

// The metadata layer over the real local store must behave as any content store does.
function factory(opts: MetadataDBOptions) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-metadata-conformance-'));
    const backing = await openLocalStore({ root: join(dir, 'content'), labels: false });
    const db = openMetadataDB(join(dir, 'meta.db'), { content: backing, ...opts });
    return {
      store: db.content!,
      ctx: { namespace: 'conformance' },
      async cleanup() {
        await db.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

runContentStoreSuite('metadata over local (shared policy)', factory({ contentSharing: 'shared' }));
runContentStoreSuite('metadata over local (isolated policy)', factory({ contentSharing: 'isolated' }));

describe('metadata over the local store', () => {
  it('shares across namespaces and frees blob files and stray ingests on GC', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-metadata-local-'));
    const backing = await openLocalStore({ root: join(dir, 'content'), labels: false });
    const db = openMetadataDB(join(dir, 'meta.db'), { content: backing });
    try {
      const cs = db.content!;
      const data = Buffer.from('layer bytes shared by two namespaces');
      const digest = digestOf(data);
      const a = { namespace: 'a' };
      const b = { namespace: 'b' };
      const wa = await cs.writer(a, { ref: 'pull', desc: { digest, size: data.length } });
      await wa.write(data);
      await wa.commit(data.length, digest, { labels: { 'containerd.io/gc.root': 'yes' } });
      await wa.close();
      const wb = await cs.writer(b, { ref: 'pull', desc: { digest, size: data.length } });
      expect((await wb.status()).offset).toBe(data.length);
      await wb.commit(data.length, digest, { labels: { 'containerd.io/gc.root': 'yes' } });
      await wb.close();
      // An ingest in the backing store that no namespace's record holds.
      const stray = await backing.writer({}, { ref: 'left-by-a-crash' });
      await stray.write(Buffer.from('never finished'));
      await stray.close();

      const file = backing.blobPath(digest);
      await cs.delete(a, digest);
      await db.collectGarbage();
      expect(existsSync(file)).toBe(true);
      expect(await backing.listStatuses({})).toEqual([]);
      await cs.delete(b, digest);
      const report = await db.collectGarbage();
      expect(existsSync(file)).toBe(false);
      expect(report.bytes).toBe(data.length);
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
