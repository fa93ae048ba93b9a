import type { Snapshotter } from '@berth/api';
import { nativeFromConfig, overlayFromConfig } from './config';
import { serveSnapshotter } from './grpc/server';

export const SNAPSHOTTER_USAGE = `usage: berth-snapshotter serve --root DIR --address SOCKET [--type overlayfs|native]

Serves one snapshotter as containerd.services.snapshots.v1 on a unix socket, for a
proxy snapshotter ([proxy_plugins] in berthd's or containerd's config.toml):

  [proxy_plugins.mysnap]
    type = "snapshot"
    address = "SOCKET"

options:
  --root DIR        where the snapshotter keeps its snapshots and metadata (required)
  --address SOCKET  unix socket to listen on (required; a stale socket is replaced)
  --type TYPE       overlayfs (default) or native
  -h, --help        this text
`;

export interface ServeFlags {
  root: string;
  address: string;
  type: 'overlayfs' | 'native';
}

export class UsageError extends Error {}

/** Parses `serve --root DIR --address SOCK [--type T]` (also `--flag=value`). */
export function parseServeArgs(argv: readonly string[]): ServeFlags | 'help' {
  if (argv.includes('-h') || argv.includes('--help') || argv[0] === 'help') return 'help';
  const [command, ...rest] = argv;
  if (command !== 'serve')
    throw new UsageError(command ? `unknown command "${command}"` : 'no command given');
  const flags: Partial<Record<'root' | 'address' | 'type', string>> = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    const m = /^--(root|address|type)(?:=(.*))?$/.exec(arg);
    if (!m) throw new UsageError(`unknown argument "${arg}"`);
    const value = m[2] ?? rest[++i];
    if (value === undefined || value === '') throw new UsageError(`--${m[1]} needs a value`);
    flags[m[1] as 'root' | 'address' | 'type'] = value;
  }
  if (!flags.root) throw new UsageError('--root is required');
  if (!flags.address) throw new UsageError('--address is required');
  const type = flags.type ?? 'overlayfs';
  if (type !== 'overlayfs' && type !== 'native') {
    throw new UsageError(`unknown snapshotter type "${type}": expected overlayfs or native`);
  }
  return { root: flags.root, address: flags.address, type };
}

/** Opens the snapshotter the flags name, with its registration's defaults (removal deferred to Cleanup). */
export function openForServe(flags: ServeFlags): Promise<Snapshotter> {
  return flags.type === 'native' ? nativeFromConfig(flags.root) : overlayFromConfig(flags.root);
}

/**
 * `berth-snapshotter`: runs until SIGTERM or SIGINT, then stops serving, closes the
 * snapshotter and resolves with the exit code (0 clean, 1 failure, 2 usage).
 */
export async function main(argv: readonly string[]): Promise<number> {
  let flags: ServeFlags | 'help';
  try {
    flags = parseServeArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`berth-snapshotter: ${e.message}\n\n${SNAPSHOTTER_USAGE}`);
    return 2;
  }
  if (flags === 'help') {
    process.stdout.write(SNAPSHOTTER_USAGE);
    return 0;
  }
  let snapshotter: Snapshotter | undefined;
  try {
    snapshotter = await openForServe(flags);
    const server = await serveSnapshotter(snapshotter, {
      address: flags.address,
      onUnexpectedError: (method, err) =>
        process.stderr.write(`berth-snapshotter: ${method}: ${(err as Error)?.stack ?? String(err)}\n`),
    });
    process.stderr.write(`berth-snapshotter: serving ${flags.type} at ${flags.root} on ${server.address}\n`);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    process.stderr.write(`berth-snapshotter: ${signal}, stopping\n`);
    await server.close();
    await snapshotter.close();
    return 0;
  } catch (e) {
    process.stderr.write(`berth-snapshotter: ${(e as Error).message}\n`);
    await snapshotter?.close().catch(() => {});
    return 1;
  }
}
