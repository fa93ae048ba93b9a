import { FailedPreconditionError } from '@berth/api';
import { END_OF_ARCHIVE, encodeHeader, padding, type TarEntryInit } from './tar-format';

export type { TarEntryInit } from './tar-format';

/** One entry with its body, for building a whole archive in memory. */
export interface TarInput extends TarEntryInit {
  data?: Buffer | string;
}

/** Builds a complete tar archive in memory (small layers, tests, examples). */
export function buildTar(entries: readonly TarInput[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data =
      e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
    parts.push(encodeHeader({ ...e, size: e.type === 'file' ? data.length : 0 }));
    if (e.type === 'file' && data.length > 0) parts.push(data, padding(data.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** Header, body and padding of one entry, as the chunks of a streamed archive. */
export async function* tarEntryChunks(e: TarEntryInit, body?: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield encodeHeader(e);
  const size = e.type === 'file' ? (e.size ?? 0) : 0;
  if (size === 0) return;
  let written = 0;
  if (body) {
    for await (const chunk of body) {
      const take = Math.min(chunk.length, size - written);
      if (take > 0) yield take === chunk.length ? chunk : chunk.subarray(0, take);
      written += take;
      if (written >= size) break;
    }
  }
  // A file that shrank while being read would make the archive lie about its content.
  if (written < size)
    throw new FailedPreconditionError(`${e.name}: file changed while archiving (short read)`);
  yield padding(size);
}

export { END_OF_ARCHIVE } from './tar-format';
