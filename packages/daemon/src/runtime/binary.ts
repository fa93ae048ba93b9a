import { accessSync, constants, readFileSync, realpathSync, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '@berth/api';
import { BERTH_SHIM_BINARY } from './berth-shim';

/** The runtime berth's own shim serves; the one berth's CLI picks by default. */
export const BERTH_RUNTIME = 'io.containerd.berth.v1';
/** containerd's runc shim (Debian's containerd package installs it). */
export const RUNC_RUNTIME = 'io.containerd.runc.v2';

/**
 * containerd's rule for a runtime name's shim binary: the last two dot-separated parts
 * name it, `io.containerd.runc.v2` -> `containerd-shim-runc-v2`. Undefined when the name
 * has fewer than two parts.
 */
export function shimBinaryName(runtime: string): string | undefined {
  const parts = runtime.split('.');
  if (parts.length < 2) return undefined;
  const [name, version] = parts.slice(-2);
  if (!name || !version) return undefined;
  return `containerd-shim-${name}-${version}`;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The directories searched after PATH: the one holding the berthd launcher that runs this
 * process, then the bin/ of the @berth/shim package berthd depends on, found as Node finds
 * the dependency (node_modules of an npm install or the workspace's link), so an installed
 * berthd runs berth's shim without anything on PATH.
 */
export function defaultShimDirs(): string[] {
  const dirs: string[] = [];
  const launcher = process.argv[1];
  if (launcher && /(^|\/)berthd$/.test(launcher)) {
    try {
      dirs.push(dirname(realpathSync(launcher)));
    } catch {
      // the launcher went away: nothing to add
    }
  }
  const shimDir = berthShimBinDir();
  if (shimDir !== undefined) dirs.push(shimDir);
  return [...new Set(dirs)];
}

/** The directory of @berth/shim's containerd-shim-berth-v1 launcher, if the package is installed. */
export function berthShimBinDir(): string | undefined {
  let manifest: string;
  try {
    manifest = require.resolve('@berth/shim/package.json');
  } catch {
    return undefined;
  }
  const { bin } = JSON.parse(readFileSync(manifest, 'utf8')) as { bin?: Record<string, string> };
  const launcher = bin?.[BERTH_SHIM_BINARY];
  return launcher === undefined ? undefined : dirname(resolve(dirname(manifest), launcher));
}

export interface ResolveOptions {
  /** PATH to search; process.env.PATH by default. */
  path?: string;
  /** Searched after PATH (defaultShimDirs() by default). */
  extraDirs?: readonly string[];
}

/**
 * The shim binary for a runtime: an absolute path is taken as the binary itself;
 * a runtime name is mapped by shimBinaryName and looked up on PATH, then next to berthd.
 */
export function resolveShimBinary(runtime: string, opts: ResolveOptions = {}): string {
  if (runtime === '') throw new InvalidArgumentError('no runtime name');
  if (isAbsolute(runtime)) {
    if (!isExecutableFile(runtime)) {
      throw new FailedPreconditionError(`invalid custom binary path "${runtime}": not an executable file`);
    }
    return runtime;
  }
  const name = shimBinaryName(runtime);
  if (name === undefined || runtime.includes('/')) {
    throw new InvalidArgumentError(
      `invalid runtime name ${runtime}, correct runtime name should be either format like \`io.containerd.runc.v1\` or a full path to the binary`,
    );
  }
  const path = opts.path ?? process.env.PATH ?? '';
  const dirs = [...path.split(delimiter).filter((d) => d !== ''), ...(opts.extraDirs ?? defaultShimDirs())];
  for (const dir of dirs) {
    const candidate = resolve(join(dir, name));
    if (isExecutableFile(candidate)) return candidate;
  }
  throw new FailedPreconditionError(
    `runtime "${runtime}" binary not installed "${name}": file does not exist`,
  );
}
