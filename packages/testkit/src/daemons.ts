import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  makeTempDir,
  type RunOptions,
  type RunResult,
  removeDir,
  repoRoot,
  run,
  stopChild,
  waitForSocket,
} from './processes';

export interface Daemon {
  readonly address: string;
  readonly root: string;
  readonly state: string;
  readonly dir: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Output the daemon wrote to stderr so far (for test failure messages). */
  logs(): string;
  /** SIGTERM (or the given signal) and wait for exit; leaves the directories in place. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** stop() and remove the temporary directories. */
  dispose(): Promise<void>;
}

function startDaemon(
  cmd: string,
  args: string[],
  dirs: { dir: string; root: string; state: string; address: string },
  env?: NodeJS.ProcessEnv,
  keepDir = false,
): Promise<Daemon> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let logs = '';
  const collect = (b: Buffer) => {
    logs += b.toString();
    if (logs.length > 1_000_000) logs = logs.slice(-500_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const daemon: Daemon = {
    ...dirs,
    child,
    pid: child.pid!,
    logs: () => logs,
    stop: (signal = 'SIGTERM') => stopChild(child, signal),
    dispose: async () => {
      await stopChild(child);
      if (!keepDir) removeDir(dirs.dir);
    },
  };
  return waitForSocket(dirs.address, 30_000, child).then(
    () => daemon,
    async (e) => {
      await stopChild(child, 'SIGKILL');
      throw new Error(`${cmd} did not start: ${(e as Error).message}\n${logs}`);
    },
  );
}

export interface StartOptions {
  /** Reuse an existing directory (root/state/socket inside it), e.g. to restart on the same root. */
  dir?: string;
  /** Extra config.toml text. */
  config?: string;
  /** The --root, elsewhere than `<dir>/root` (e.g. on a small file system). */
  root?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

/** Starts bin/berthd (built dist) on a temporary root, state and socket. */
export function startBerthd(opts: StartOptions = {}): Promise<Daemon> {
  const dir = opts.dir ?? makeTempDir('berthd-');
  const root = opts.root ?? join(dir, 'root');
  const state = join(dir, 'state');
  const address = join(dir, 'berth.sock');
  mkdirSync(root, { recursive: true });
  const configPath = join(dir, 'config.toml');
  writeFileSync(configPath, opts.config ?? 'version = 2\n');
  const args = [
    join(repoRoot, 'bin', 'berthd'),
    '--root',
    root,
    '--state',
    state,
    '--address',
    address,
    '--config',
    configPath,
    ...(opts.args ?? []),
  ];
  return startDaemon(process.execPath, args, { dir, root, state, address }, opts.env, opts.dir !== undefined);
}

export const containerdInstalled = (): boolean => existsSync('/usr/bin/containerd');

/** Starts Debian's containerd on a temporary root, without the CRI plugin, for side-by-side checks. */
export function startContainerd(opts: StartOptions = {}): Promise<Daemon> {
  const dir = opts.dir ?? makeTempDir('containerd-');
  const root = opts.root ?? join(dir, 'root');
  const state = join(dir, 'state');
  const address = join(dir, 'containerd.sock');
  mkdirSync(root, { recursive: true });
  const configPath = join(dir, 'config.toml');
  writeFileSync(
    configPath,
    opts.config ??
      [
        'version = 2',
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        `[plugins."io.containerd.internal.v1.opt"]`,
        `  path = "${join(dir, 'opt')}"`,
        '',
      ].join('\n'),
  );
  const args = [
    '--root',
    root,
    '--state',
    state,
    '--address',
    address,
    '--config',
    configPath,
    ...(opts.args ?? []),
  ];
  return startDaemon(
    '/usr/bin/containerd',
    args,
    { dir, root, state, address },
    opts.env,
    opts.dir !== undefined,
  );
}

/** Runs the stock ctr against a socket. */
export function ctr(address: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('/usr/bin/ctr', ['--address', address, ...args], opts);
}

/** Runs berth's CLI (bin/berth, built dist) against a socket. */
export function berth(address: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'bin', 'berth'), '--address', address, ...args], opts);
}
