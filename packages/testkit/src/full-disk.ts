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
