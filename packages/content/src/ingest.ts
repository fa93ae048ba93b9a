import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Digest, type IngestStatus, NanoDate, parseRFC3339 } from '@berth/api';
import { isErrno } from './fs-util';

/**
 * One ingest directory, `<root>/ingest/<sha256 of ref>/`:
 *   ref        the ref, verbatim (the directory name is only its hash)
 *   data       the bytes written so far; its size is the offset
 *   startedat  RFC 3339 time the ingest began, with nanoseconds (Go's RFC3339Nano)
 *   updatedat  RFC 3339 time of the last write, refreshed when a writer closes (likewise)
 *   total      expected size in decimal, absent when unknown
 *   expected   expected digest, absent when unknown
 * A new ingest is assembled under `<root>/ingest/.tmp-*` and renamed into place, so a
 * directory with a hashed name always has its ref and timestamps.
 */
export const INGEST_FILES = {
  ref: 'ref',
  data: 'data',
  startedAt: 'startedat',
  updatedAt: 'updatedat',
  total: 'total',
  expected: 'expected',
} as const;

export const TMP_PREFIX = '.tmp-';

export function ingestDirName(ref: string): string {
  return createHash('sha256').update(ref).digest('hex');
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return undefined;
    throw e;
  }
}

function parseTime(text: string | undefined): NanoDate | undefined {
  return text === undefined ? undefined : parseRFC3339(text);
}

/**
 * Reads an ingest's state from disk. Undefined when the directory (or its data or ref)
 * is missing or unreadable as an ingest — callers treat that as "no such ingest".
 */
export async function readIngest(dir: string): Promise<IngestStatus | undefined> {
  let size: number;
  let mtime: bigint;
  try {
    const st = await stat(join(dir, INGEST_FILES.data), { bigint: true });
    size = Number(st.size);
    mtime = st.mtimeNs;
  } catch (e) {
    if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) return undefined;
    throw e;
  }
  const [ref, started, updated, total, expected] = await Promise.all([
    readOptional(join(dir, INGEST_FILES.ref)),
    readOptional(join(dir, INGEST_FILES.startedAt)),
    readOptional(join(dir, INGEST_FILES.updatedAt)),
    readOptional(join(dir, INGEST_FILES.total)),
    readOptional(join(dir, INGEST_FILES.expected)),
  ]);
  const startedAt = parseTime(started);
  if (ref === undefined || startedAt === undefined) return undefined;
  // updatedat is written at close only; a writer killed mid-ingest leaves the data's
  // mtime as the better answer.
  const updatedFile = parseTime(updated) ?? startedAt;
  const updatedAt = mtime > updatedFile.toNanos() ? new NanoDate(mtime) : updatedFile;
  const totalNum = total === undefined ? 0 : Number.parseInt(total, 10);
  return {
    ref,
    offset: size,
    total: Number.isSafeInteger(totalNum) && totalNum > 0 ? totalNum : 0,
    expected: (expected ?? '').trim() as Digest,
    startedAt,
    updatedAt,
  };
}
