import { createHash, randomBytes } from 'node:crypto';
import { ctr } from './daemons';
import { run } from './processes';

/** What filling a daemon's disk with blobs left. */
export interface IngestFill {
  /** Blobs committed (and labelled gc.root, so no collection takes them), in order. */
  committed: string[];
  /** The failing ingest: its ref and what ctr printed. */
  failed: { ref: string; stderr: string };
}

/**
 * Ingests random blobs of `blobMiB` MiB with the stock `ctr content ingest` (each labelled
 * `containerd.io/gc.root` once committed) until one fails; throws if `max` all fit.
 */
export async function fillWithIngests(
  address: string,
  opts: { blobMiB?: number; prefix?: string; max?: number } = {},
): Promise<IngestFill> {
  const size = (opts.blobMiB ?? 8) << 20;
  const prefix = opts.prefix ?? 'fill';
  const committed: string[] = [];
  for (let i = 0; i < (opts.max ?? 1000); i++) {
    const data = randomBytes(size);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const ref = `${prefix}-${i}`;
    const r = await ctr(
      address,
      ['content', 'ingest', '--expected-digest', digest, '--expected-size', String(size), ref],
      { input: data },
    );
    if (r.code !== 0) return { committed, failed: { ref, stderr: r.stderr } };
    const l = await ctr(address, ['content', 'label', digest, 'containerd.io/gc.root=fill']);
    // Collected between its commit and its label (the daemon's GC may run at any mutation,
    // containerd's too): its space is free again, so filling goes on.
    if (l.code !== 0 && /not found/.test(l.stderr)) continue;
    if (l.code !== 0) throw new Error(`ctr content label ${digest}: ${l.stderr}`);
    committed.push(digest);
  }
  throw new Error(`${opts.max ?? 1000} blobs of ${size} bytes fit: the file system is not small`);
}

/**
 * Creates leases carrying a 3000-byte label (metadata only, no blobs) until one fails;
 * returns their ids and the failure.
 */
export async function fillMetadataWithLeases(
  address: string,
  opts: { prefix?: string; max?: number } = {},
): Promise<{ created: string[]; failed: { id: string; stderr: string } }> {
  const prefix = opts.prefix ?? 'fill';
  const created: string[] = [];
  const label = `pad=${'x'.repeat(3000)}`;
  for (let i = 0; i < (opts.max ?? 100_000); i++) {
    const id = `${prefix}-${i}`;
    const r = await ctr(address, ['leases', 'create', '--id', id, label]);
    if (r.code !== 0) return { created, failed: { id, stderr: r.stderr } };
    created.push(id);
  }
  throw new Error(`${opts.max ?? 100_000} leases fit: the file system is not small`);
}

/**
 * Reads every blob the daemon lists (`ctr content ls -q`) back through the API and checks
 * its digest; returns the digests checked and those that did not match.
 */
export async function verifyBlobs(address: string): Promise<{ checked: string[]; bad: string[] }> {
  const ls = await ctr(address, ['content', 'ls', '-q']);
  if (ls.code !== 0) throw new Error(`ctr content ls: ${ls.stderr}`);
  const checked = ls.stdout.split('\n').filter(Boolean);
  const bad: string[] = [];
  for (const digest of checked) {
    const r = await run('/bin/sh', [
      '-c',
      `/usr/bin/ctr --address "$1" content get "$2" | sha256sum`,
      'sh',
      address,
      digest,
    ]);
    if (r.code !== 0 || `sha256:${r.stdout.split(' ')[0]}` !== digest) bad.push(digest);
  }
  return { checked, bad };
}

/** Polls `cond` every 100 ms until it holds or `timeoutMs` passes; returns its last answer. */
export async function eventually(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What one round of `fullDiskRound` saw. */
export interface FullDiskReport {
  /** Blobs committed before the disk filled. */
  committed: number;
  /** What ctr printed for the ingest that found the disk full. */
  ingestError: string;
  /** What ctr printed for the lease create that found it full (metadata), if asked. */
  metadataError?: string;
  /** Blobs read back whose digest was wrong (must be empty). */
  bad: string[];
  /** Bytes free after the deletes and the collection. */
  freeAfter: number;
}

/**
 * One round of the full-disk scenario against a daemon whose --root is on a small file
 * system (see withSmallFilesystem): fill it with blobs (and, with `metadata`, with leases)
 * until writes fail, check every committed blob, delete everything it added through the
 * API, wait for the collection to give the space back and ingest once more. Throws with
 * the reason when a delete fails, the space does not come back or the last ingest fails;
 * the caller asserts on the report (error wording, `bad` empty).
 */
export async function fullDiskRound(
  address: string,
  free: () => number,
  opts: { blobMiB?: number; metadata?: boolean; prefix?: string } = {},
): Promise<FullDiskReport> {
  const prefix = opts.prefix ?? `round-${Date.now()}`;
  const blobMiB = opts.blobMiB ?? 8;
  const fill = await fillWithIngests(address, { blobMiB, prefix: `${prefix}-blob` });
  const leases = opts.metadata
    ? await fillMetadataWithLeases(address, { prefix: `${prefix}-lease` })
    : undefined;
  const { bad } = await verifyBlobs(address);
  const must = async (args: string[]) => {
    const r = await ctr(address, args);
    if (r.code !== 0)
      throw new Error(`on a full disk, ctr ${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
  };
  if (leases && leases.created.length > 0) await must(['leases', 'rm', ...leases.created]);
  if (fill.committed.length > 0) await must(['content', 'rm', ...fill.committed]);
  const want = blobMiB << 20;
  if (!(await eventually(() => free() > want, 30_000))) {
    throw new Error(`the deletes did not give ${want} bytes back (free: ${free()})`);
  }
  const again = await ctr(address, ['content', 'ingest', `${prefix}-again`], {
    input: randomBytes(want / 2),
  });
  if (again.code !== 0) throw new Error(`ingest after freeing failed: ${again.stderr}`);
  const ls = await ctr(address, ['content', 'ls', '-q']);
  const left = ls.stdout.split('\n').filter(Boolean);
  if (left.length > 0) await must(['content', 'rm', ...left]);
  return {
    committed: fill.committed.length,
    ingestError: fill.failed.stderr,
    metadataError: leases?.failed.stderr,
    bad,
    freeAfter: free(),
  };
}
