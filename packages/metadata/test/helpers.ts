import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommitOptions, type ContentStore, type Context, type Digest, digestOf } from '@berth/api';
import { type MetadataDB, type MetadataDBOptions, openMetadataDB } from '../src';
import { MemoryContentStore } from './memory-store';

export interface Fixture {
  dir: string;
  path: string;
  backing: MemoryContentStore;
  db: MetadataDB;
  open(opts?: MetadataDBOptions): MetadataDB;
  cleanup(): Promise<void>;
}

/** A metadata DB in a temp dir over an in-memory backing store. */
export function fixture(opts: MetadataDBOptions = {}): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'berth-metadata-'));
  const path = join(dir, 'meta.db');
  const backing = new MemoryContentStore();
  const opened: MetadataDB[] = [];
  const open = (o: MetadataDBOptions = {}) => {
    const db = openMetadataDB(path, { content: backing, exclusive: false, ...opts, ...o });
    opened.push(db);
    return db;
  };
  return {
    dir,
    path,
    backing,
    db: open(),
    open,
    async cleanup() {
      for (const db of opened) await db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const ns = (namespace: string, lease?: string): Context => ({ namespace, lease });

/** Writes and commits `data` under `ref`; returns its digest. */
export async function put(
  store: ContentStore,
  ctx: Context,
  data: string | Buffer,
  opts: { ref?: string; labels?: CommitOptions['labels'] } = {},
): Promise<Digest> {
  const buf = Buffer.from(data);
  const digest = digestOf(buf);
  const w = await store.writer(ctx, {
    ref: opts.ref ?? `ref-${digest.slice(7, 19)}`,
    desc: { digest, size: buf.length },
  });
  try {
    // As containerd's clients: send only what the ingest does not have yet.
    const { offset } = await w.status();
    await w.write(buf.subarray(offset));
    await w.commit(buf.length, digest, { labels: opts.labels });
  } finally {
    await w.close();
  }
  return digest;
}

/** Runs fn and returns the error it throws (failing when it does not). */
export async function errorOf(fn: () => Promise<unknown>): Promise<any> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, none was thrown');
}
