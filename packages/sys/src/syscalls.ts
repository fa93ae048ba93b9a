import { type ExitInfo, native } from './native';

/** mount(2) flags. */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
} as const;

/** umount2(2) flags. */
export const MNT = { FORCE: 1, DETACH: 2, EXPIRE: 4, NOFOLLOW: 8 } as const;

/** Mode bits for mknod. */
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

export function mount(
  source: string | null,
  target: string,
  fstype: string | null,
  flags: number,
  data: string | null,
  cwd?: string,
): void {
  native().mount(source, target, fstype, flags, data, cwd);
}

export function unmount(target: string, flags = 0): void {
  native().umount2(target, flags);
}

export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  native().mknod(path, mode, major, minor);
}

export function lsetxattr(path: string, name: string, value: Buffer | string, flags = 0): void {
  native().lsetxattr(path, name, typeof value === 'string' ? Buffer.from(value) : value, flags);
}

/** The attribute's value, or undefined when the file has no such attribute. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  return native().lgetxattr(path, name);
}

/** Attribute names; empty where the filesystem has no xattr support. */
export function llistxattr(path: string): string[] {
  return native().llistxattr(path);
}

export function lremovexattr(path: string, name: string): void {
  native().lremovexattr(path, name);
}

/** Makes this process adopt orphaned descendants (a shim must reap what runc leaves). */
export function setChildSubreaper(): void {
  native().setChildSubreaper();
}

export function pidfdOpen(pid: number): number {
  return native().pidfdOpen(pid);
}

/** Reaps `pid` if it has exited (never blocks); null while it runs. */
export function reapPid(pid: number): ExitInfo | null {
  return native().waitid(0, pid, false);
}

/** Reaps any exited child (never blocks); null when none has exited. */
export function reapAny(): ExitInfo | null {
  return native().waitid(2, 0, false);
}

/** Looks at the next exited child without reaping it; null when none has exited. */
export function peekExited(): ExitInfo | null {
  return native().waitid(2, 0, true);
}

/** A pipe as [readFd, writeFd], both close-on-exec (a child given one as stdio gets it without the flag). */
export function pipe(): [number, number] {
  return native().pipe();
}

/** A close-on-exec duplicate of fd. */
export function dup(fd: number): number {
  return native().dup(fd);
}

/**
 * A listening unix stream socket bound to `path` (mode 0600) as a close-on-exec fd:
 * the socket a shim's `start` hands its server as fd 3, or a runc --console-socket.
 * Throws EADDRINUSE when `path` exists.
 */
export function listenUnix(path: string, options: { nonblocking?: boolean } = {}): number {
  return native().listenUnix(path, options.nonblocking === true);
}

/**
 * Accepts the pending connection on a listening socket and returns the descriptor its
 * peer sent with SCM_RIGHTS (how runc hands over a pty master). Never blocks: throws
 * EAGAIN when nobody connected yet (on a non-blocking listener), ENOMSG when no fd came.
 */
export function receiveFd(listenFd: number): number {
  return native().receiveFd(listenFd);
}

/** Sets a terminal's window size (TIOCSWINSZ); on a pty master it resizes the slave. */
export function setWinsize(fd: number, size: { rows: number; cols: number }): void {
  native().setWinsize(fd, size.rows, size.cols);
}

/**
 * Sets or clears O_NONBLOCK on fd's open file description (so on every duplicate of it).
 * A pty master must not be written with blocking writes by an event loop.
 */
export function setNonblocking(fd: number, on = true): void {
  native().setNonblocking(fd, on);
}

/** A terminal's window size (TIOCGWINSZ). */
export function getWinsize(fd: number): { rows: number; cols: number } {
  const [rows, cols] = native().getWinsize(fd);
  return { rows, cols };
}

export type { ExitInfo };
