import { type ImageConfigOptions, withImageConfig } from './image-config';
import { parseMountFlag, withMounts } from './mounts';
import {
  withAddedCapabilities,
  withAnnotations,
  withCgroup,
  withCPUShares,
  withDefaultUnixDevices,
  withDroppedCapabilities,
  withEnv,
  withHostname,
  withMemoryLimit,
  withNetHost,
  withProcessArgs,
  withProcessCwd,
  withRootfsPath,
  withRootfsReadonly,
  withTTY,
} from './opts';
import { withPrivileged } from './privileged';
import type { SpecOpt } from './spec';
import type { ImageConfig, Mount } from './types';
import { withUser } from './user';

/** The flags of a `run` command that shape the spec (ctr run's, plus `user` and `hostname`). */
export interface RunSpecOptions {
  /** The image's config; leave out with `rootfsPath` for an unmanaged root. */
  image?: ImageConfig;
  /** `--rootfs`: run a root filesystem directory instead of an image. */
  rootfsPath?: string;
  /** The command after the image and id. */
  args?: readonly string[];
  /**
   * What `args` replaces: `all` (ctr: the entrypoint too, the default) or `cmd`
   * (docker: the entrypoint stays).
   */
  argsReplace?: 'all' | 'cmd';
  env?: readonly string[];
  /** `--mount` values (ctr syntax) or ready mounts. */
  mounts?: ReadonlyArray<string | Mount>;
  readonly?: boolean;
  cwd?: string;
  tty?: boolean;
  privileged?: boolean;
  /** `--net-host`; a string names the HOSTNAME to set (default: this host's name). */
  netHost?: boolean | string;
  hostname?: string;
  /** `--user`, resolved in the container's root filesystem after the image's own user. */
  user?: string;
  capAdd?: readonly string[];
  capDrop?: readonly string[];
  /** ctr passes 1024 unless told otherwise; 0 leaves shares unset. */
  cpuShares?: number;
  memoryLimit?: number;
  /** `--cgroup`: the cgroup path instead of `/<namespace>/<id>` (`''` lets the runtime choose). */
  cgroup?: string;
  /** `--annotation` and `--label` values, as annotations. */
  annotations?: Record<string, string>;
}

/**
 * The options ctr run applies after the default spec, in ctr's order, so the same flags give
 * the same spec: devices, env, mounts, image config, read-only root, args, cwd, tty,
 * privileged, host network, capabilities, cpu shares, cgroup, memory, annotations.
 */
export function runSpecOpts(flags: RunSpecOptions): SpecOpt[] {
  const opts: SpecOpt[] = [withDefaultUnixDevices, withEnv(flags.env ?? [])];
  const mounts = (flags.mounts ?? []).map((m) => (typeof m === 'string' ? parseMountFlag(m) : m));
  opts.push(withMounts(mounts));
  const args = flags.args ?? [];
  const replaceCmdOnly = flags.argsReplace === 'cmd';
  if (flags.rootfsPath !== undefined) opts.push(withRootfsPath(flags.rootfsPath));
  else if (flags.image) {
    const imageOpts: ImageConfigOptions = replaceCmdOnly ? { args } : {};
    opts.push(withImageConfig(flags.image, imageOpts));
  }
  if (flags.user) opts.push(withUser(flags.user));
  if (flags.readonly) opts.push(withRootfsReadonly);
  if (args.length > 0 && !(replaceCmdOnly && flags.image && flags.rootfsPath === undefined)) {
    opts.push(withProcessArgs(...args));
  }
  if (flags.cwd) opts.push(withProcessCwd(flags.cwd));
  if (flags.tty) opts.push(withTTY);
  if (flags.privileged) opts.push(withPrivileged);
  if (flags.netHost)
    opts.push(typeof flags.netHost === 'string' ? withNetHost(flags.netHost) : withNetHost());
  if (flags.hostname) opts.push(withHostname(flags.hostname));
  if (flags.capAdd?.length) opts.push(withAddedCapabilities(flags.capAdd));
  if (flags.capDrop?.length) opts.push(withDroppedCapabilities(flags.capDrop));
  const shares = flags.cpuShares ?? 1024;
  if (shares > 0) opts.push(withCPUShares(shares));
  if (flags.cgroup !== undefined) opts.push(withCgroup(flags.cgroup));
  if (flags.memoryLimit) opts.push(withMemoryLimit(flags.memoryLimit));
  opts.push(withAnnotations(flags.annotations ?? {}));
  return opts;
}
