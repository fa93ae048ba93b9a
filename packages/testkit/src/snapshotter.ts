import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { makeTempDir, removeDir, repoRoot, stopChild, waitForSocket } from './processes';

export interface SnapshotterServer {
  readonly address: string;
  readonly root: string;
  readonly child: ChildProcess;
  logs(): string;
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number | null>;
  /** stop() and remove the temporary directory. */
  dispose(): Promise<void>;
}

/** Starts bin/berth-snapshotter (built dist) on a temporary root and socket. */
export async function startSnapshotterServer(
  opts: { type?: 'overlayfs' | 'native'; dir?: string } = {},
): Promise<SnapshotterServer> {
  const dir = opts.dir ?? makeTempDir('berth-snapshotter-');
  const root = join(dir, 'root');
  const address = join(dir, 'snapshotter.sock');
  const child = spawn(
    process.execPath,
    [
      join(repoRoot, 'bin', 'berth-snapshotter'),
      'serve',
      '--root',
      root,
      '--address',
      address,
      '--type',
      opts.type ?? 'overlayfs',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let logs = '';
  child.stdout!.on('data', (b: Buffer) => (logs += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (logs += b.toString()));
  const server: SnapshotterServer = {
    address,
    root,
    child,
    logs: () => logs,
    stop: () => stopChild(child),
    dispose: async () => {
      await stopChild(child);
      if (!opts.dir) removeDir(dir);
    },
  };
  try {
    await waitForSocket(address, 20_000, child);
  } catch (e) {
    await stopChild(child, 'SIGKILL');
    if (!opts.dir) removeDir(dir);
    throw new Error(`berth-snapshotter did not start: ${(e as Error).message}\n${logs}`);
  }
  return server;
}
