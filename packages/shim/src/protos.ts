/**
 * The shim's own messages, which are not part of containerd's API tree in @berth/api:
 * the runc options a daemon sends (containerd.runc.v1), and the cgroup metrics Stats
 * returns (io.containerd.cgroups.v1/v2). Loaded on first use.
 */
import { join } from 'node:path';
import { CONVERSION_OPTIONS, InvalidArgumentError } from '@berth/api';
import * as protobuf from 'protobufjs';

export const SHIM_PROTO_ROOT = join(__dirname, '..', 'proto');

const FILES = [
  'containerd/runc/v1/options.proto',
  'io/containerd/cgroups/v1/metrics.proto',
  'io/containerd/cgroups/v2/metrics.proto',
];

let root: protobuf.Root | undefined;

function shimRoot(): protobuf.Root {
  if (root === undefined) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => join(SHIM_PROTO_ROOT, target);
    r.loadSync(FILES, { keepCase: false });
    r.resolveAll();
    root = r;
  }
  return root;
}

export function shimType(name: string): protobuf.Type {
  return shimRoot().lookupType(name);
}

export function encodeShimMessage(typeName: string, value: object): Buffer {
  const type = shimType(typeName);
  const err = type.verify(value as Record<string, unknown>);
  if (err) throw new InvalidArgumentError(`encode ${typeName}: ${err}`);
  return Buffer.from(type.encode(type.fromObject(value as Record<string, unknown>)).finish());
}

export function decodeShimMessage<T = Record<string, unknown>>(typeName: string, bytes: Uint8Array): T {
  const type = shimType(typeName);
  try {
    return type.toObject(type.decode(bytes), CONVERSION_OPTIONS) as T;
  } catch (err) {
    throw new InvalidArgumentError(`decode ${typeName}: ${(err as Error).message}`, { cause: err });
  }
}

/** containerd.runc.v1.Options as this shim uses them. */
export interface RuncOptions {
  noPivotRoot: boolean;
  noNewKeyring: boolean;
  shimCgroup: string;
  ioUid: number;
  ioGid: number;
  binaryName: string;
  root: string;
  criuPath: string;
  systemdCgroup: boolean;
  criuImagePath: string;
  criuWorkPath: string;
}

export const RUNC_OPTIONS_TYPES = ['containerd.runc.v1.Options', 'io.containerd.runc.v1.Options'];

/** Decodes CreateTaskRequest.options; an absent Any means defaults. */
export function decodeRuncOptions(
  any: { typeUrl: string; value: Uint8Array } | null | undefined,
): RuncOptions {
  const empty = decodeShimMessage<RuncOptions>('containerd.runc.v1.Options', new Uint8Array());
  if (any == null || any.typeUrl === '') return empty;
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  if (!RUNC_OPTIONS_TYPES.includes(name)) {
    throw new InvalidArgumentError(
      `runtime options of type ${JSON.stringify(any.typeUrl)}: expected containerd.runc.v1.Options`,
    );
  }
  return decodeShimMessage<RuncOptions>('containerd.runc.v1.Options', any.value);
}
