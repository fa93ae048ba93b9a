import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface ExitInfo {
  pid: number;
  /** The exit code, or 128 + signal for a process killed by a signal (as a shell reports it). */
  exitStatus: number;
  signal?: number;
}

export interface NativeSys {
  mount(
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
    data: string | null,
    cwd?: string,
  ): void;
  umount2(target: string, flags: number): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  lsetxattr(path: string, name: string, value: Buffer, flags: number): void;
  lgetxattr(path: string, name: string): Buffer | undefined;
  llistxattr(path: string): string[];
  lremovexattr(path: string, name: string): void;
  setChildSubreaper(): void;
  pidfdOpen(pid: number): number;
  waitid(kind: 0 | 1 | 2, id: number, nowait: boolean): ExitInfo | null;
  pipe(): [number, number];
  dup(fd: number): number;
  listenUnix(path: string, nonblock: boolean): number;
  receiveFd(listenFd: number): number;
  setWinsize(fd: number, rows: number, cols: number): void;
  setNonblocking(fd: number, on: boolean): void;
  getWinsize(fd: number): [number, number];
  tcpSocketInNetns(netnsPath: string, family: 4 | 6): number;
  connectTcp(fd: number, host: string, port: number): Promise<void>;
}

const addonPath = join(__dirname, '..', 'build', 'Release', 'sys.node');

function load(): NativeSys {
  if (!existsSync(addonPath)) {
    throw new Error(
      `@berth/sys native addon missing at ${addonPath}: reinstall @berth/sys (its install step compiles native/sys.c with node-gyp), or run \`pnpm build\` in the workspace`,
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(addonPath) as NativeSys;
}

let cached: NativeSys | undefined;
/** The addon, loaded on first use so that importing @berth/sys never fails by itself. */
export function native(): NativeSys {
  cached ??= load();
  return cached;
}
