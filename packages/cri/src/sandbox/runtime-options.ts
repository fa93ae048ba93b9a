import type { AnyValue } from '@berth/api';
import { encodeShimMessage } from '@berth/shim';
import type { RuntimeHandler } from '../config';

/** The runc shim's options message (containerd.runc.v1.Options), as containerd 1.6's runtimeoptions. */
const RUNC_OPTIONS_TYPE = 'containerd.runc.v1.Options';

// config.toml spells runc's options in Go's field names (SystemdCgroup, BinaryName, ...);
// the message's fields are the protobuf ones.
const RUNC_OPTION_FIELDS: Record<string, string> = {
  NoPivotRoot: 'noPivotRoot',
  NoNewKeyring: 'noNewKeyring',
  ShimCgroup: 'shimCgroup',
  IoUid: 'ioUid',
  IoGid: 'ioGid',
  BinaryName: 'binaryName',
  Root: 'root',
  CriuPath: 'criuPath',
  SystemdCgroup: 'systemdCgroup',
  CriuImagePath: 'criuImagePath',
  CriuWorkPath: 'criuWorkPath',
};

/**
 * What a container record's runtime.options (and so the shim's `start` stdin and the task's
 * create options) hold for a runtime handler: runc's Options for io.containerd.runc.* and
 * berth's shim (which reads the same message); undefined when the handler sets none, as
 * containerd leaves them empty.
 */
export function runtimeOptions(handler: RuntimeHandler): AnyValue | undefined {
  const entries = Object.entries(handler.options);
  if (entries.length === 0) return undefined;
  const msg: Record<string, unknown> = {};
  for (const [k, v] of entries) {
    const field = RUNC_OPTION_FIELDS[k];
    // Unknown keys are dropped as containerd's toml decoding into runc's Options drops them.
    if (field) msg[field] = v;
  }
  return { typeUrl: RUNC_OPTIONS_TYPE, value: Buffer.from(encodeShimMessage(RUNC_OPTIONS_TYPE, msg)) };
}

/** Whether the handler's cgroups are systemd's (runc's SystemdCgroup option). */
export function systemdCgroup(handler: RuntimeHandler): boolean {
  return handler.options.SystemdCgroup === true;
}
