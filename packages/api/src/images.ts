import type { Context } from './context';
import type { Descriptor } from './descriptor';
import type { Labels } from './labels';

/** An image record: a name pointing at a manifest or index (containerd's images.Image). */
export interface Image {
  name: string;
  labels: Labels;
  target: Descriptor;
  createdAt: Date;
  updatedAt: Date;
}

export interface ImageStore {
  get(ctx: Context, name: string): Promise<Image>;
  /** Filters on name, target.digest, target.mediatype, labels.<k>. */
  list(ctx: Context, filters?: string[]): Promise<Image[]>;
  /** AlreadyExists when the name is taken. */
  create(ctx: Context, image: Omit<Image, 'createdAt' | 'updatedAt'>): Promise<Image>;
  /** Field paths: `labels`, `labels.<k>`, `target`, `annotations`...; all when none given. */
  update(ctx: Context, image: Omit<Image, 'createdAt' | 'updatedAt'>, fieldpaths?: string[]): Promise<Image>;
  /** With sync, a garbage collection runs before the call returns. */
  delete(ctx: Context, name: string, opts?: { sync?: boolean }): Promise<void>;
}
