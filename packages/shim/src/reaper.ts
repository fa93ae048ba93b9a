/**
 * Exit statuses for a subreaper that shares its children with libuv.
 *
 * Node reaps the children it spawned itself (runc invocations) through libuv; the shim
 * must never reap those. Container processes are not Node's children: runc leaves them
 * to us when it exits (we are their subreaper). On SIGCHLD we reap the pids we watch with
 * waitid(P_PID), then walk the exited children with waitid(WNOWAIT) and reap the orphans
 * libuv does not know, so no zombie stays behind.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { type ExitInfo, peekExited, reapPid } from '@berth/sys';
import { type Timestamp, timestampNow } from './time';

export interface Exit {
  pid: number;
  /** Exit code, or 128 + signal when killed (what containerd reports). */
  status: number;
  signal?: number;
  at: Timestamp;
}

const toExit = (info: ExitInfo): Exit => ({
  pid: info.pid,
  status: info.exitStatus,
  signal: info.signal,
  at: timestampNow(),
});

export class Reaper {
  private readonly watched = new Map<number, (exit: Exit) => void>();
  private readonly spawned = new Set<number>();
  private readonly unclaimed = new Map<number, Exit>();
  private claimers = 0;
  private retry: NodeJS.Timeout | undefined;
  private readonly onSignal = (): void => this.reap();
  /** Orphans reaped that nobody watched or claimed. */
  orphansReaped = 0;

  install(): void {
    process.on('SIGCHLD', this.onSignal);
  }

  uninstall(): void {
    process.off('SIGCHLD', this.onSignal);
    if (this.retry !== undefined) clearTimeout(this.retry);
  }

  /** child_process.spawn, remembering the pid as libuv's to reap. */
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    const child = spawn(command, args, options);
    const pid = child.pid;
    if (pid !== undefined) {
      this.spawned.add(pid);
      child.once('exit', () => this.spawned.delete(pid));
    }
    return child;
  }

  /** Calls onExit once when `pid` (a child of ours that libuv did not spawn) exits. */
  watch(pid: number, onExit: (exit: Exit) => void): void {
    const early = this.unclaimed.get(pid);
    if (early !== undefined) {
      this.unclaimed.delete(pid);
      onExit(early);
      return;
    }
    const info = reapPid(pid);
    if (info !== null) {
      onExit(toExit(info));
      return;
    }
    this.watched.set(pid, onExit);
  }

  unwatch(pid: number): void {
    this.watched.delete(pid);
  }

  /**
   * Brackets an operation that learns a pid only after the process may already have
   * exited (runc create and exec write the pid file, then exit, handing the process
   * to us). Orphans reaped meanwhile are kept so watch() still sees their exit.
   * Returns the function that ends the bracket.
   */
  beginClaim(): () => void {
    this.claimers++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.claimers === 0) this.unclaimed.clear();
    };
  }

  /** Reaps everything that has exited and is ours to reap. Runs on every SIGCHLD. */
  reap(): void {
    for (const [pid, onExit] of this.watched) {
      const info = reapPid(pid);
      if (info === null) continue;
      this.watched.delete(pid);
      onExit(toExit(info));
    }
    for (;;) {
      const next = peekExited();
      if (next === null) return;
      if (this.spawned.has(next.pid)) {
        // libuv's own child, about to be reaped by libuv: look again shortly for what is behind it.
        this.retry ??= setTimeout(() => {
          this.retry = undefined;
          this.reap();
        }, 5);
        return;
      }
      const info = reapPid(next.pid);
      if (info === null) continue;
      const onExit = this.watched.get(info.pid);
      if (onExit !== undefined) {
        this.watched.delete(info.pid);
        onExit(toExit(info));
      } else if (this.claimers > 0) {
        this.unclaimed.set(info.pid, toExit(info));
      } else {
        this.orphansReaped++;
      }
    }
  }
}
