import {
  type BerthError,
  type ContentStore,
  type Context,
  type Descriptor,
  FailedPreconditionError,
  isAlreadyExists,
  isUnavailable,
  type Labels,
  UnavailableError,
  type Writer,
} from '@berth/api';
import { ingestRef } from './image/media-types';
import { type RemoteRepository, retryableTransfer } from './remotes/registry';

export type BlobStatus = 'waiting' | 'downloading' | 'resumed' | 'exists' | 'shared' | 'done';

export interface BlobProgress {
  digest: string;
  mediaType: string;
  /** Bytes in the store (or in its ingest) so far. */
  offset: number;
  total: number;
  status: BlobStatus;
}

export interface FetchBlobOptions {
  /** Labels the committed blob gets. */
  labels?: Labels;
  onProgress?: (p: BlobProgress) => void;
  /** How long to keep retrying to open an ingest another writer holds (default 10 min). */
  lockWaitMs?: number;
}

export type FetchResult = 'fetched' | 'exists';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Opens the ingest for `desc` under its deterministic ref; undefined when the blob is
 * already in the store. A ref held by another writer is waited for (containerd's OpenWriter).
 */
async function openWriter(
  ctx: Context,
  content: ContentStore,
  desc: Descriptor,
  lockWaitMs: number,
): Promise<Writer | undefined> {
  const ref = ingestRef(desc);
  const deadline = Date.now() + lockWaitMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await content.writer(ctx, {
        ref,
        desc: { digest: desc.digest, size: desc.size, mediaType: desc.mediaType },
      });
    } catch (e) {
      if (isAlreadyExists(e)) return undefined;
      if (isUnavailable(e) && Date.now() < deadline && !ctx.signal?.aborted) {
        await sleep(Math.min(2000, 50 * 2 ** attempt));
        continue;
      }
      throw e;
    }
  }
}

/**
 * Downloads a blob into the content store. A download continues from the bytes already in
 * the ingest (a Range request; when the server ignores it the ingest restarts), retries
 * broken or stalled transfers from where they stopped, and commits only when size and
 * digest check out. A digest mismatch empties the ingest, so bad bytes never linger.
 */
export async function fetchBlob(
  ctx: Context,
  repo: RemoteRepository,
  content: ContentStore,
  desc: Descriptor,
  opts: FetchBlobOptions = {},
): Promise<FetchResult> {
  const report = (offset: number, status: BlobStatus) =>
    opts.onProgress?.({ digest: desc.digest, mediaType: desc.mediaType, offset, total: desc.size, status });
  const w = await openWriter(ctx, content, desc, opts.lockWaitMs ?? 600_000);
  if (!w) {
    report(desc.size, 'exists');
    return 'exists';
  }
  const retries = repo.client.retries;
  try {
    let offset = (await w.status()).offset;
    if (offset > desc.size) {
      await w.truncate(0);
      offset = 0;
    }
    const resumedFrom = offset;
    if (offset > 0) report(offset, 'resumed');
    let freshRetry = resumedFrom > 0;
    for (;;) {
      let failures = 0;
      while (offset < desc.size) {
        const before = offset;
        try {
          const { start, body } = await repo.openBlob(desc, offset, ctx.signal);
          if (start !== offset) {
            await w.truncate(start);
            offset = start;
          }
          report(offset, 'downloading');
          for await (const chunk of body) {
            if (offset + chunk.length > desc.size) {
              throw new FailedPreconditionError(
                `${desc.digest} from ${repo.name}: registry sent more than the ${desc.size} bytes the descriptor says`,
              );
            }
            await w.write(chunk);
            offset += chunk.length;
            report(offset, 'downloading');
          }
          if (offset < desc.size) {
            throw new UnavailableError(
              `${desc.digest} from ${repo.name}: body ended at ${offset} of ${desc.size} bytes`,
            );
          }
        } catch (e) {
          if (ctx.signal?.aborted || !retryableTransfer(e)) throw e;
          // Progress resets the budget: a flaky link that keeps moving gets there.
          if (offset > before) failures = 0;
          if (++failures > retries) {
            throw new UnavailableError(
              `${desc.digest} from ${repo.name}: giving up after ${failures} attempts at ${offset} of ${desc.size} bytes: ${(e as Error).message}`,
              { cause: e },
            );
          }
          await sleep(repo.client.backoff(failures - 1));
        }
      }
      try {
        await w.commit(desc.size, desc.digest, { labels: opts.labels });
        report(desc.size, 'done');
        return 'fetched';
      } catch (e) {
        if (isAlreadyExists(e)) {
          report(desc.size, 'exists');
          return 'exists';
        }
        if ((e as BerthError).code !== 'ERR_FAILED_PRECONDITION') throw e;
        // Wrong bytes: never keep them. A resumed ingest may hold a bad prefix from an
        // earlier run, so that case gets one download from scratch before failing.
        await w.truncate(0);
        offset = 0;
        if (freshRetry) {
          freshRetry = false;
          continue;
        }
        throw new FailedPreconditionError(
          `${desc.digest} from ${repo.name}: content does not match its digest; nothing was committed (${(e as Error).message})`,
          { cause: e },
        );
      }
    }
  } finally {
    await w.close().catch(() => undefined);
  }
}

/**
 * Stores an in-memory blob (a verified manifest or config) under its descriptor, with labels.
 * When it is already there, the labels are merged in instead.
 */
export async function storeBlob(
  ctx: Context,
  content: ContentStore,
  desc: Descriptor,
  data: Buffer,
  labels: Labels = {},
): Promise<FetchResult> {
  const w = await openWriter(ctx, content, desc, 600_000);
  if (w) {
    try {
      await w.truncate(0);
      await w.write(data);
      await w.commit(desc.size, desc.digest, { labels });
      return 'fetched';
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
    } finally {
      await w.close().catch(() => undefined);
    }
  }
  await mergeLabels(ctx, content, desc.digest, labels);
  return 'exists';
}

/** Sets labels on an existing blob, leaving the others alone. */
export async function mergeLabels(
  ctx: Context,
  content: ContentStore,
  digest: string,
  labels: Labels,
): Promise<void> {
  const keys = Object.keys(labels);
  if (keys.length === 0) return;
  await content.update(
    ctx,
    { digest, labels },
    keys.map((k) => `labels.${k}`),
  );
}
