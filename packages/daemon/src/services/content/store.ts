import type {
  ContentInfo,
  ContentStore,
  Context,
  Descriptor,
  Digest,
  IngestStatus,
  Publisher,
  ReaderAt,
  WalkFunc,
  Writer,
  WriterOptions,
} from '@berth/api';
import { Topics } from '@berth/api';

/** The content service layer: the metadata content store plus events (as containerd, on delete). */
export class ContentServiceStore implements ContentStore {
  constructor(
    private readonly store: ContentStore,
    private readonly publisher: Publisher,
  ) {}

  info(ctx: Context, digest: Digest): Promise<ContentInfo> {
    return this.store.info(ctx, digest);
  }

  update(
    ctx: Context,
    info: Pick<ContentInfo, 'digest' | 'labels'>,
    fieldpaths?: string[],
  ): Promise<ContentInfo> {
    return this.store.update(ctx, info, fieldpaths);
  }

  walk(ctx: Context, fn: WalkFunc, filters?: string[]): Promise<void> {
    return this.store.walk(ctx, fn, filters);
  }

  async delete(ctx: Context, digest: Digest): Promise<void> {
    await this.store.delete(ctx, digest);
    await this.publisher.publish(ctx, Topics.contentDelete, 'containerd.events.ContentDelete', { digest });
  }

  readerAt(ctx: Context, desc: Pick<Descriptor, 'digest'> & Partial<Descriptor>): Promise<ReaderAt> {
    return this.store.readerAt(ctx, desc);
  }

  status(ctx: Context, ref: string): Promise<IngestStatus> {
    return this.store.status(ctx, ref);
  }

  listStatuses(ctx: Context, filters?: string[]): Promise<IngestStatus[]> {
    return this.store.listStatuses(ctx, filters);
  }

  abort(ctx: Context, ref: string): Promise<void> {
    return this.store.abort(ctx, ref);
  }

  writer(ctx: Context, opts: WriterOptions): Promise<Writer> {
    return this.store.writer(ctx, opts);
  }
}
