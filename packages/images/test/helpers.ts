import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ApplyOptions, applyLayer, buildTar, type TarInput } from '@berth/images';

const dirs: string[] = [];

/** A temp dir removed after the test. */
export async function tempDir(prefix = 'berth-images-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export async function cleanupTempDirs(): Promise<void> {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
}

/** Feeds a buffer in uneven chunks, so block boundaries fall mid-chunk. */
export function chunked(buf: Buffer, size = 777): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

export const T0 = 1_600_000_000;

/** Fills in what most test entries share (root-owned, fixed time). */
export function entries(list: Array<Partial<TarInput> & Pick<TarInput, 'name' | 'type'>>): TarInput[] {
  return list.map((e) => ({
    mode: e.type === 'dir' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    mtime: T0,
    ...e,
  }));
}

export function layer(list: Array<Partial<TarInput> & Pick<TarInput, 'name' | 'type'>>): Buffer {
  return buildTar(entries(list));
}

export function apply(buf: Buffer, target: string, opts?: ApplyOptions) {
  return applyLayer(chunked(buf), target, opts);
}
