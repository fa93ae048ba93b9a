import type { Context } from './context';
import type { Labels } from './labels';

/** A protobuf Any, as the wire carries it. */
export interface AnyValue {
  typeUrl: string;
  value: Buffer;
}

/** A container record (containerd's containers.Container): metadata only, no process. */
export interface Container {
  id: string;
  labels: Labels;
  image: string;
  runtime: { name: string; options?: AnyValue };
  /** The OCI runtime spec, as an Any (types.containerd.io/opencontainers/runtime-spec/1/Spec). */
  spec?: AnyValue;
  snapshotter: string;
  snapshotKey: string;
  extensions: Record<string, AnyValue>;
  sandbox: string;
  createdAt: Date;
  updatedAt: Date;
}

export type ContainerInput = Omit<Container, 'createdAt' | 'updatedAt'>;

export interface ContainerStore {
  get(ctx: Context, id: string): Promise<Container>;
  /** Filters on id, image, runtime.name, snapshotter, labels.<k>. */
  list(ctx: Context, filters?: string[]): Promise<Container[]>;
  /** AlreadyExists when the id is taken; InvalidArgument for a bad id or a missing runtime/spec. */
  create(ctx: Context, container: ContainerInput): Promise<Container>;
  /**
   * Field paths: `labels`, `labels.<k>`, `spec`, `extensions`, `extensions.<k>`, `snapshotkey`,
   * `image`; the runtime and snapshotter cannot change (InvalidArgument), as in containerd.
   */
  update(ctx: Context, container: ContainerInput, fieldpaths?: string[]): Promise<Container>;
  delete(ctx: Context, id: string): Promise<void>;
}

/** The type URL containerd uses for an OCI runtime spec carried in an Any. */
export const SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
