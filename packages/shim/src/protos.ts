/**
 * The shim's own messages, which are not part of containerd's API tree in @berth/api:
 * the runc options a daemon sends (containerd.runc.v1), and the cgroup metrics Stats
 * returns (io.containerd.cgroups.v1/v2). Loaded on first use.
 */
import { join } from 'node:path';
import { CONVERSION_OPTIONS, decodeMessage, InvalidArgumentError } from '@berth/api';
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

/**
 * The v1 Linux runtime's options (@berth/api's containerd.linux.runc), which containerd's
 * Go client sends to every runtime not named io.containerd.runc.*: RuncOptions as runtime
 * options, CreateOptions as task options (WithNoNewKeyring, WithShimCgroup, ...).
 */
export const RUNCTYPES_RUNC_OPTIONS = 'containerd.linux.runc.RuncOptions';
export const RUNCTYPES_CREATE_OPTIONS = 'containerd.linux.runc.CreateOptions';

interface RuncTypesRuncOptions {
  runtime: string;
  runtimeRoot: string;
  criuPath: string;
  systemdCgroup: boolean;
}

interface RuncTypesCreateOptions {
  noPivotRoot: boolean;
  noNewKeyring: boolean;
  shimCgroup: string;
  ioUid: number;
  ioGid: number;
  criuWorkPath: string;
  criuImagePath: string;
}

/**
 * Decodes CreateTaskRequest.options into containerd.runc.v1.Options; an absent Any means
 * defaults. The v1 runtime's RuncOptions and CreateOptions map onto the same fields
 * (runtime -> binary_name, runtime_root -> root), as containerd's v1 runtime used them.
 */
export function decodeRuncOptions(
  any: { typeUrl: string; value: Uint8Array } | null | undefined,
): RuncOptions {
  const empty = decodeShimMessage<RuncOptions>('containerd.runc.v1.Options', new Uint8Array());
  if (any == null || any.typeUrl === '') return empty;
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  if (RUNC_OPTIONS_TYPES.includes(name)) {
    return decodeShimMessage<RuncOptions>('containerd.runc.v1.Options', any.value);
  }
  if (name === RUNCTYPES_RUNC_OPTIONS) {
    const v = decodeMessage<RuncTypesRuncOptions>(name, any.value);
    return {
      ...empty,
      binaryName: v.runtime,
      root: v.runtimeRoot,
      criuPath: v.criuPath,
      systemdCgroup: v.systemdCgroup,
    };
  }
  if (name === RUNCTYPES_CREATE_OPTIONS) {
    const v = decodeMessage<RuncTypesCreateOptions>(name, any.value);
    return {
      ...empty,
      noPivotRoot: v.noPivotRoot,
      noNewKeyring: v.noNewKeyring,
      shimCgroup: v.shimCgroup,
      ioUid: v.ioUid,
      ioGid: v.ioGid,
      criuWorkPath: v.criuWorkPath,
      criuImagePath: v.criuImagePath,
    };
  }
  throw new InvalidArgumentError(
    `runtime options of type ${JSON.stringify(any.typeUrl)}: expected containerd.runc.v1.Options, ` +
      `${RUNCTYPES_RUNC_OPTIONS} or ${RUNCTYPES_CREATE_OPTIONS}`,
  );
}
