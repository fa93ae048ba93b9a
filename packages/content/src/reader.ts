import type { FileHandle } from 'node:fs/promises';
import { FailedPreconditionError, InvalidArgumentError, type ReaderAt } from '@berth/api';
import { readFully } from './fs-util';

/** Random access to one committed blob through an open file handle. */
export class LocalReaderAt implements ReaderAt {
  private closed = false;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  async readAt(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(`invalid read offset ${offset}: must be a non-negative integer`);
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new InvalidArgumentError(`invalid read length ${length}: must be a non-negative integer`);
    }
    if (this.closed) throw new FailedPreconditionError('read on a closed reader');
    // Past the end is an empty read, as io.ReaderAt's EOF; the blob never changes size.
    const n = Math.min(length, Math.max(0, this.size - offset));
    if (n === 0) return Buffer.alloc(0);
    return readFully(this.fh, n, offset);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
