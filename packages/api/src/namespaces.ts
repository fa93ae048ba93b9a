import type { Context } from './context';
import type { Labels } from './labels';

export interface NamespaceStore {
  create(ctx: Context, name: string, labels?: Labels): Promise<void>;
  labels(ctx: Context, name: string): Promise<Labels>;
  setLabel(ctx: Context, name: string, key: string, value: string): Promise<void>;
  list(ctx: Context): Promise<string[]>;
  /** FailedPrecondition when the namespace still holds anything. */
  delete(ctx: Context, name: string): Promise<void>;
}
