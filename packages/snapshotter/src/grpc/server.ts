import { lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AlreadyExistsError, InvalidArgumentError, type Snapshotter } from '@berth/api';
import { Server } from '@berth/grpc';
import { snapshotsServiceDefinition, snapshotsServiceHandlers } from './service';

export interface ServeOptions {
  /** Unix socket path (`unix://` prefix optional). */
  address: string;
  /** Called with errors that are not berth's typed errors. */
  onUnexpectedError?: (method: string, err: unknown) => void;
  /** Largest message accepted and sent; 16 MiB by default, as containerd. */
  maxMessageSize?: number;
}

export interface SnapshotterServer {
  /** The socket path served. */
  readonly address: string;
  /** Stops accepting calls, waits up to graceMs for running ones, removes the socket. */
  close(graceMs?: number): Promise<void>;
}

function socketPathOf(address: string): string {
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  if (path === '') throw new InvalidArgumentError(`address "${address}": missing socket path`);
  return resolve(path);
}

/** Removes a stale socket left by a previous run; refuses to replace anything else. */
function clearSocket(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new AlreadyExistsError(`address ${path}: exists and is not a socket`);
  unlinkSync(path);
}

/**
 * Serves one snapshotter as containerd.services.snapshots.v1 on a unix socket: what a
 * proxy snapshotter (`[proxy_plugins]` in berthd's or containerd's config.toml) talks to.
 * The request's `snapshotter` field is ignored, as containerd's own snapshot servers do.
 */
export async function serveSnapshotter(
  snapshotter: Snapshotter,
  opts: ServeOptions,
): Promise<SnapshotterServer> {
  const path = socketPathOf(opts.address);
  const size = opts.maxMessageSize ?? 16 << 20;
  // @berth/grpc accepts any :authority: gRPC-Go dialing a bare unix path sends the path there.
  const server = new Server({ maxRecvMessageSize: size, maxSendMessageSize: size });
  server.addService(
    snapshotsServiceDefinition(),
    snapshotsServiceHandlers(() => snapshotter, { onUnexpectedError: opts.onUnexpectedError }),
  );
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  clearSocket(path);
  await server.listen(path);
  let closing: Promise<void> | undefined;
  return {
    address: path,
    close(graceMs = 5000) {
      closing ??= (async () => {
        await server.shutdown(graceMs);
        try {
          unlinkSync(path);
        } catch {}
      })();
      return closing;
    },
  };
}
