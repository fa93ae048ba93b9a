import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '@berth/api';
import type { ContainerRecord } from '../records';

/** The part of a container that changes after CreateContainer: kept in a file, not in the containerd record. */
export type ContainerStatusFile = Pick<
  ContainerRecord,
  'state' | 'startedAt' | 'finishedAt' | 'exitCode' | 'reason' | 'message' | 'pid'
>;

export const statusPath = (dir: string) => join(dir, 'status.json');

/** Writes the status atomically, so a daemon killed mid-write leaves the old one. */
export async function writeStatus(dir: string, rec: ContainerRecord): Promise<void> {
  const s: ContainerStatusFile = {
    state: rec.state,
    startedAt: rec.startedAt,
    finishedAt: rec.finishedAt,
    exitCode: rec.exitCode,
    reason: rec.reason,
    message: rec.message,
    pid: rec.pid,
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(statusPath(dir), JSON.stringify(s));
}

/** The status written last; undefined when there is none (or it cannot be read). */
export async function readStatus(dir: string): Promise<ContainerStatusFile | undefined> {
  try {
    return JSON.parse(await readFile(statusPath(dir), 'utf8')) as ContainerStatusFile;
  } catch {
    return undefined;
  }
}
