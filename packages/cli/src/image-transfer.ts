/**
 * What the image commands that move content share: registry flags (`--plain-http`,
 * `--user`, `--hosts-dir`, `--platform`), the choice between the daemon's Transfer service
 * and a pull run by the CLI itself through Content, Leases, Snapshots and Diff (a daemon
 * without Transfer, such as containerd 1.6), and the progress display.
 */
import type { Context, Image, Platform } from '@berth/api';
import type { Client, TransferPlatform } from '@berth/client';
import type { FlagSpec, FlagValues } from './args';
import { UsageError } from './args';
import { ProgressDisplay, type ProgressEvent } from './progress';
import type { Globals } from './runtime';

export const REGISTRY_FLAGS: readonly FlagSpec[] = [
  {
    name: 'plain-http',
    type: 'bool',
    description: 'talk plain http to the registry (default only for localhost and 127.0.0.1)',
  },
  {
    name: 'user',
    short: 'u',
    type: 'string',
    value: 'USER:PASSWORD',
    description: 'credentials for the registry (basic auth, or exchanged for a token)',
  },
  {
    name: 'hosts-dir',
    type: 'string',
    value: 'DIR',
    description: "containerd's hosts.toml directory (<dir>/<host>/hosts.toml: mirrors, TLS, headers)",
  },
];

export const PLATFORM_FLAG: FlagSpec = {
  name: 'platform',
  type: 'string',
  repeatable: true,
  value: 'OS/ARCH[/VARIANT]',
  description: "platform to use (default: this host's)",
};

export const SNAPSHOTTER_FLAG: FlagSpec = {
  name: 'snapshotter',
  type: 'string',
  value: 'NAME',
  default: '',
  env: ['CONTAINERD_SNAPSHOTTER'],
  description: "snapshotter to unpack into (default: the daemon's, overlayfs)",
};

export const LOCAL_FLAG: FlagSpec = {
  name: 'local',
  type: 'bool',
  description:
    'do the work in this process through the content, snapshot and diff services, not the Transfer service',
};

export interface Credentials {
  username: string;
  password: string;
}

/** `--user name:password` (the password may contain colons). */
export function parseUser(value: string | undefined, path: readonly string[]): Credentials | undefined {
  if (value === undefined || value === '') return undefined;
  const i = value.indexOf(':');
  if (i <= 0) throw new UsageError(`--user "${value}": expected USER:PASSWORD`, path);
  return { username: value.slice(0, i), password: value.slice(i + 1) };
}

const images = (): typeof import('@berth/images') =>
  require('@berth/images') as typeof import('@berth/images');

/** Credentials for a registry host: `--user`, else ~/.docker/config.json (`auths`). */
export function credentialsFunc(
  user: Credentials | undefined,
): (host: string) => Promise<{ username?: string; password?: string; identityToken?: string } | undefined> {
  if (user) return async () => user;
  const fromConfig = images().dockerConfigCredentials();
  return (host) => fromConfig(host);
}

/** `--platform` values (parsed and normalised as containerd does); empty when none given. */
export function platformsOf(flags: FlagValues, path: readonly string[]): Platform[] {
  const list = (flags.platform as string[] | undefined) ?? [];
  try {
    return list.map((p) => images().parsePlatform(p));
  } catch (e) {
    throw new UsageError(`--platform: ${(e as Error).message}`, path);
  }
}

export const transferPlatform = (p: Platform): TransferPlatform => ({
  os: p.os,
  architecture: p.architecture,
  ...(p.variant ? { variant: p.variant } : {}),
});

/** The display for this command's output: bars on a terminal, lines otherwise, nothing for JSON. */
export function progressDisplay(g: Globals): ProgressDisplay | undefined {
  if (g.format === 'json') return undefined;
  const out = g.io.stdout as NodeJS.WriteStream;
  return new ProgressDisplay(g.io.stdout, { tty: out.isTTY === true, columns: out.columns });
}

/**
 * Runs `server` (the daemon's Transfer service); when the daemon has no such service, runs
 * `local` instead. Other failures are the command's.
 */
export async function transferOrLocal<T>(
  flags: FlagValues,
  server: () => Promise<T>,
  local: () => Promise<T>,
): Promise<{ value: T; via: 'transfer' | 'local' }> {
  if (flags.local) return { value: await local(), via: 'local' };
  try {
    return { value: await server(), via: 'transfer' };
  } catch (e) {
    const { isUnimplementedService } = require('@berth/client') as typeof import('@berth/client');
    if (!isUnimplementedService(e)) throw e;
    return { value: await local(), via: 'local' };
  }
}

/** A client-side pull event as the Transfer service would report it. */
export function pullEventToProgress(e: import('@berth/images').PullEvent): ProgressEvent | undefined {
  if (e.type === 'resolved') return undefined;
  if (e.type === 'unpack') {
    return {
      event: e.status === 'started' ? 'unpacking' : 'unpacked',
      name: `layer-${e.layer}`,
      progress: 0,
      total: 0,
    };
  }
  const name = images().ingestRef({ mediaType: e.mediaType, digest: e.digest });
  const event =
    e.status === 'exists'
      ? 'already exists'
      : e.status === 'done' || e.status === 'shared'
        ? 'complete'
        : e.status === 'waiting'
          ? 'waiting'
          : 'downloading';
  return { event, name, progress: e.offset, total: e.total };
}

/** The same credentials in the shape the Transfer service's auth stream carries. */
export function transferCredentials(user: Credentials | undefined) {
  const lookup = credentialsFunc(user);
  return async (host: string) => {
    const c = await lookup(host);
    if (!c) return undefined;
    if (c.username) return { username: c.username, secret: c.password ?? '' };
    if (c.identityToken) return { secret: c.identityToken };
    return undefined;
  };
}

/** The pieces a client-side pull or import needs, over the daemon's services. */
export function localPipeline(client: Client, snapshotter: string) {
  const { RemoteDiff } = require('@berth/client') as typeof import('@berth/client');
  const name = snapshotter || 'overlayfs';
  return {
    content: client.content,
    leases: client.leases,
    snapshotter: client.snapshots(name),
    snapshotterName: name,
    applier: new RemoteDiff(client.stubFor('containerd.services.diff.v1.Diff'), client.address),
  };
}

/** Creates the image record, or replaces target and labels of an existing one (as ctr does). */
export async function saveImage(
  client: Client,
  ctx: Context,
  image: Pick<Image, 'name' | 'target' | 'labels'>,
): Promise<Image> {
  try {
    return await client.images.create(ctx, image);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_ALREADY_EXISTS') throw e;
    return client.images.update(ctx, image, ['target', 'labels']);
  }
}
