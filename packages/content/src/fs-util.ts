import { constants } from 'node:fs';
import { open, unlink } from 'node:fs/promises';

export const isErrno = (e: unknown, code: string): boolean => (e as NodeJS.ErrnoException)?.code === code;

/** Makes a rename or link inside `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Removes a file; a missing file is not an error. */
export async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
}

/** Writes all of `data` at `position`, looping over short writes. */
export async function writeFully(
  fh: import('node:fs/promises').FileHandle,
  data: Buffer,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** Reads up to `length` bytes at `position`; shorter only at end of file. */
export async function readFully(
  fh: import('node:fs/promises').FileHandle,
  length: number,
  position: number,
): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}
