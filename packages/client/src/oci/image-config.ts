import { InvalidArgumentError } from '@berth/api';
import { replaceOrAppendEnv } from './env';
import { DEFAULT_UNIX_ENV, ensureProcess, type SpecOpt } from './spec';
import type { ImageConfig } from './types';
import { withAdditionalGIDs, withUser } from './user';

function stringArray(v: unknown, field: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
    throw new InvalidArgumentError(`invalid image config: ${field} is not a list of strings`);
  }
  return v;
}

function optionalString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new InvalidArgumentError(`invalid image config: ${field} is not a string`);
  return v;
}

/**
 * The `config` member of an image configuration blob (OCI or Docker schema 2), checked for
 * the fields `run` uses; an image without one runs with the defaults.
 */
export function parseImageConfig(blob: Buffer | string): ImageConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(blob.toString());
  } catch (e) {
    throw new InvalidArgumentError(`invalid image config: ${(e as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new InvalidArgumentError('invalid image config: not a JSON object');
  }
  const c = (doc as { config?: unknown }).config;
  if (c === undefined || c === null) return {};
  if (typeof c !== 'object' || Array.isArray(c))
    throw new InvalidArgumentError('invalid image config: config is not an object');
  const raw = c as Record<string, unknown>;
  const config: ImageConfig = {};
  const user = optionalString(raw.User, 'User');
  if (user !== undefined) config.User = user;
  const env = stringArray(raw.Env, 'Env');
  if (env) config.Env = env;
  const entrypoint = stringArray(raw.Entrypoint, 'Entrypoint');
  if (entrypoint) config.Entrypoint = entrypoint;
  const cmd = stringArray(raw.Cmd, 'Cmd');
  if (cmd) config.Cmd = cmd;
  const cwd = optionalString(raw.WorkingDir, 'WorkingDir');
  if (cwd !== undefined) config.WorkingDir = cwd;
  const stop = optionalString(raw.StopSignal, 'StopSignal');
  if (stop !== undefined) config.StopSignal = stop;
  if (raw.Labels && typeof raw.Labels === 'object') config.Labels = raw.Labels as Record<string, string>;
  return config;
}

export interface ImageConfigOptions {
  /** Replaces the image's Cmd (the entrypoint stays), as `docker run IMAGE args...`. */
  args?: readonly string[];
}

/**
 * What the image says about its process (containerd's WithImageConfigArgs): its Env under
 * the variables already set (the default PATH when it has none), Entrypoint + Cmd as the
 * command line, WorkingDir (`/` when unset), and User resolved in the container's root
 * filesystem with its supplementary groups.
 */
export function withImageConfig(config: ImageConfig, opts: ImageConfigOptions = {}): SpecOpt {
  return async (spec, ctx) => {
    if (!spec.linux) throw new InvalidArgumentError('spec has no linux section to apply an image config to');
    const process = ensureProcess(spec);
    const defaults = config.Env && config.Env.length > 0 ? config.Env : DEFAULT_UNIX_ENV;
    const env = replaceOrAppendEnv(defaults, process.env ?? []);
    if (env.length > 0) process.env = env;
    else delete process.env;
    const cmd = opts.args && opts.args.length > 0 ? opts.args : (config.Cmd ?? []);
    const args = [...(config.Entrypoint ?? []), ...cmd];
    if (args.length > 0) process.args = args;
    else delete process.args;
    process.cwd = config.WorkingDir || '/';
    if (config.User) {
      await withUser(config.User)(spec, ctx);
      await withAdditionalGIDs(String(process.user.uid))(spec, ctx);
    } else {
      await withAdditionalGIDs('root')(spec, ctx);
    }
  };
}
