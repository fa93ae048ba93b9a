import { createHash } from 'node:crypto';
import {
  AlreadyExistsError,
  type ContentInfo,
  type Context,
  type Digest,
  type Ingester,
  type Labels,
  type Manager,
  type Writer,
} from '@berth/api';

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Just enough of a content store: blobs in memory, commit checks size and digest. */
export class MemoryContent implements Ingester, Pick<Manager, 'info' | 'update'> {
  readonly blobs = new Map<Digest, { data: Buffer; labels: Labels }>();
  async writer(_ctx: Context, opts: { ref: string }): Promise<Writer> {
    const parts: Buffer[] = [];
    const store = this.blobs;
    return {
      ref: opts.ref,
      async write(data) {
        parts.push(Buffer.from(data));
      },
      digest: () => sha(Buffer.concat(parts)),
      status: async () => {
        throw new Error('unused');
      },
      truncate: async () => {},
      async commit(size, expected, copts) {
        const data = Buffer.concat(parts);
        if (data.length !== size || sha(data) !== expected) throw new Error('bad commit');
        if (store.has(expected!)) throw new AlreadyExistsError(`content ${expected}: already exists`);
        store.set(expected!, { data, labels: { ...copts?.labels } });
      },
      close: async () => {},
    };
  }
  async info(_ctx: Context, digest: Digest): Promise<ContentInfo> {
    const b = this.blobs.get(digest)!;
    return { digest, size: b.data.length, createdAt: new Date(), updatedAt: new Date(), labels: b.labels };
  }
  async update(_ctx: Context, info: Pick<ContentInfo, 'digest' | 'labels'>): Promise<ContentInfo> {
    Object.assign(this.blobs.get(info.digest)!.labels, info.labels);
    return this.info(_ctx, info.digest);
  }
}
