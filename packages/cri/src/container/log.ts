import { Writable } from 'node:stream';

/** A Writable keeping at most `max` bytes and dropping the rest (containerd's cappedWriter for ExecSync). */
export class CappedBuffer extends Writable {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly max: number) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    const room = this.max - this.size;
    if (room > 0) {
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.chunks.push(Buffer.from(part));
      this.size += part.length;
    }
    cb();
  }

  value(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
