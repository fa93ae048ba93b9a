/**
 * The cgroup figures the CRI's stats carry, read straight from cgroupfs: CPU time, memory
 * (usage, limit, inactive file pages, rss, page faults), pids and the processes in it. Both
 * layouts: cgroup v1 (one hierarchy per controller under `<root>/<controller>`) and the
 * unified v2 hierarchy at `<root>`. The root and /proc are options so tests read recorded trees.
 */
import { readFile, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { type CgroupMode, parseProcCgroup } from '@berth/shim';

export type { CgroupMode };

/**
 * Where one cgroup lives: for v2 one path below the root; for v1 a path per controller
 * (they may differ, as /proc/<pid>/cgroup shows), `*` standing for any controller not named.
 */
export interface CgroupLocation {
  mode: CgroupMode;
  paths: ReadonlyMap<string, string>;
}

export interface MemoryFigures {
  usage: number;
  /** undefined: no limit (v2 `max`, or v1's "unlimited" page-rounded maximum). */
  limit: number | undefined;
  /** v1 total_inactive_file, v2 inactive_file: what the working set leaves out. */
  inactiveFile: number;
  /** v1 total_rss, v2 anon (as cAdvisor and containerd on v2). */
  rss: number;
  pageFaults: number;
  majorPageFaults: number;
}

/** What one read of a cgroup found; a controller whose files are missing is left out. */
export interface CgroupFigures {
  /** Cumulative CPU time, nanoseconds (v1 cpuacct.usage, v2 cpu.stat usage_usec × 1000). */
  cpuUsageNs?: number;
  memory?: MemoryFigures;
  /** pids.current: tasks (threads included). */
  pids?: number;
  /** Lines of cgroup.procs: processes. */
  processes?: number;
}

/** A cgroup file whose contents are not what the kernel writes there. */
export class CgroupParseError extends Error {
  constructor(
    readonly file: string,
    text: string,
  ) {
    super(`cgroup file ${file}: cannot parse ${JSON.stringify(text.slice(0, 80))}`);
    this.name = 'CgroupParseError';
  }
}

/** Above this a memory limit means "none" (the kernel rounds 2^63-1 down to a page): containerd's isMemoryUnlimited. */
const UNLIMITED = 2 ** 62;

/** Errors that mean the cgroup (or its process) went away while it was read. */
function vanished(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENODEV' || code === 'ESRCH' || code === 'ENOTDIR';
}

/**
 * A systemd unit path as runc's systemd driver lays it out: `a-b-c.slice` lives in
 * `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
 */
export function expandSlice(slice: string): string {
  if (!slice.endsWith('.slice') || slice.includes('/')) return slice;
  const name = slice.slice(0, -'.slice'.length);
  if (name === '-' || name === '') return '/';
  let path = '';
  let prefix = '';
  for (const part of name.split('-')) {
    prefix = prefix === '' ? part : `${prefix}-${part}`;
    path += `/${prefix}.slice`;
  }
  return path;
}

/**
 * An OCI `linux.cgroupsPath` (or a pod's cgroup parent) as a path below the hierarchy root:
 * cgroupfs paths as they are; systemd's `slice:prefix:name` as `<slice path>/<prefix>-<name>.scope`;
 * a bare `*.slice` as its expanded path.
 */
export function cgroupfsPath(cgroupsPath: string): string {
  const parts = cgroupsPath.split(':');
  if (parts.length === 3 && !cgroupsPath.startsWith('/')) {
    const [slice, prefix, name] = parts as [string, string, string];
    const unit = name.endsWith('.slice') ? name : `${prefix ? `${prefix}-` : ''}${name}.scope`;
    return posix.join(expandSlice(slice || 'system.slice'), unit);
  }
  if (cgroupsPath.endsWith('.slice') && !cgroupsPath.includes('/')) return expandSlice(cgroupsPath);
  return posix.join('/', cgroupsPath);
}

/** `key value` lines (memory.stat, cpu.stat); a value that is not a number is a parse error. */
export function parseFlatKeyed(file: string, text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    const m = /^(\S+)\s+(\d+)$/.exec(t);
    if (!m) throw new CgroupParseError(file, text);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function parseUint(file: string, text: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new CgroupParseError(file, text);
  return Number(t);
}

export interface CgroupReaderOptions {
  /** Where the hierarchies are mounted (default /sys/fs/cgroup). */
  root?: string;
  /** procfs (default /proc). */
  proc?: string;
  /** Forces a layout; by default v2 when `<root>/cgroup.controllers` exists. */
  mode?: CgroupMode;
}

export class CgroupReader {
  readonly root: string;
  readonly proc: string;
  private modeP: Promise<CgroupMode> | undefined;

  constructor(opts: CgroupReaderOptions = {}) {
    this.root = opts.root ?? '/sys/fs/cgroup';
    this.proc = opts.proc ?? '/proc';
    if (opts.mode) this.modeP = Promise.resolve(opts.mode);
  }

  mode(): Promise<CgroupMode> {
    this.modeP ??= stat(posix.join(this.root, 'cgroup.controllers')).then(
      () => 'v2' as const,
      () => 'v1' as const,
    );
    return this.modeP;
  }

  /** The cgroup a cgroupfs or systemd path names. */
  async ofPath(cgroupsPath: string): Promise<CgroupLocation> {
    return { mode: await this.mode(), paths: new Map([['*', cgroupfsPath(cgroupsPath)]]) };
  }

  /** The cgroup a process is in; undefined when the process is gone. */
  async ofPid(pid: number): Promise<CgroupLocation | undefined> {
    if (!(pid > 0)) return undefined;
    let text: string;
    try {
      text = await readFile(posix.join(this.proc, String(pid), 'cgroup'), 'utf8');
    } catch (e) {
      if (vanished(e)) return undefined;
      throw e;
    }
    const mode = await this.mode();
    const all = parseProcCgroup(text);
    if (mode === 'v2') {
      const p = all.get('');
      return p === undefined ? undefined : { mode, paths: new Map([['*', p]]) };
    }
    all.delete('');
    if (all.size === 0) return undefined;
    return { mode, paths: all };
  }

  private dir(loc: CgroupLocation, controller: string): string {
    const p = loc.paths.get(controller) ?? loc.paths.get('*');
    if (loc.mode === 'v2') return posix.join(this.root, p ?? '/');
    return posix.join(this.root, controller, p ?? '/');
  }

  /** A file's text; undefined when it (or its cgroup) is missing. */
  private async text(
    loc: CgroupLocation,
    controller: string,
    name: string,
  ): Promise<[string, string | undefined]> {
    const file = posix.join(this.dir(loc, controller), name);
    try {
      return [file, await readFile(file, 'utf8')];
    } catch (e) {
      if (vanished(e)) return [file, undefined];
      throw e;
    }
  }

  private async uint(loc: CgroupLocation, controller: string, name: string): Promise<number | undefined> {
    const [file, text] = await this.text(loc, controller, name);
    return text === undefined ? undefined : parseUint(file, text);
  }

  private async keyed(
    loc: CgroupLocation,
    controller: string,
    name: string,
  ): Promise<Map<string, number> | undefined> {
    const [file, text] = await this.text(loc, controller, name);
    return text === undefined ? undefined : parseFlatKeyed(file, text);
  }

  private async processes(loc: CgroupLocation, controllers: string[]): Promise<number | undefined> {
    for (const c of controllers) {
      const [, text] = await this.text(loc, c, 'cgroup.procs');
      if (text !== undefined) return text.split('\n').filter((l) => l.trim() !== '').length;
    }
    return undefined;
  }

  /**
   * Reads a cgroup. Undefined when nothing of it is left (the cgroup was removed: its
   * container exited); a file that holds something else than the kernel writes throws
   * CgroupParseError naming it.
   */
  async read(loc: CgroupLocation): Promise<CgroupFigures | undefined> {
    const out = loc.mode === 'v2' ? await this.readV2(loc) : await this.readV1(loc);
    if (out.cpuUsageNs === undefined && out.memory === undefined && out.processes === undefined)
      return undefined;
    return out;
  }

  private async readV1(loc: CgroupLocation): Promise<CgroupFigures> {
    const [cpu, usage, limit, stat, pids, processes] = await Promise.all([
      this.uint(loc, 'cpuacct', 'cpuacct.usage'),
      this.uint(loc, 'memory', 'memory.usage_in_bytes'),
      this.uint(loc, 'memory', 'memory.limit_in_bytes'),
      this.keyed(loc, 'memory', 'memory.stat'),
      this.uint(loc, 'pids', 'pids.current'),
      this.processes(loc, ['pids', 'memory', 'cpuacct']),
    ]);
    const out: CgroupFigures = {};
    if (cpu !== undefined) out.cpuUsageNs = cpu;
    if (usage !== undefined) {
      out.memory = {
        usage,
        limit: limit === undefined || limit > UNLIMITED ? undefined : limit,
        inactiveFile: stat?.get('total_inactive_file') ?? 0,
        rss: stat?.get('total_rss') ?? 0,
        pageFaults: stat?.get('total_pgfault') ?? 0,
        majorPageFaults: stat?.get('total_pgmajfault') ?? 0,
      };
    }
    if (pids !== undefined) out.pids = pids;
    if (processes !== undefined) out.processes = processes;
    return out;
  }

  private async readV2(loc: CgroupLocation): Promise<CgroupFigures> {
    const [cpuStat, usage, max, stat, pids, processes] = await Promise.all([
      this.keyed(loc, '', 'cpu.stat'),
      this.uint(loc, '', 'memory.current'),
      this.text(loc, '', 'memory.max'),
      this.keyed(loc, '', 'memory.stat'),
      this.uint(loc, '', 'pids.current'),
      this.processes(loc, ['']),
    ]);
    const out: CgroupFigures = {};
    const usec = cpuStat?.get('usage_usec');
    if (usec !== undefined) out.cpuUsageNs = usec * 1000;
    if (usage !== undefined) {
      const [maxFile, maxText] = max;
      const limit =
        maxText === undefined || maxText.trim() === 'max' ? undefined : parseUint(maxFile, maxText);
      out.memory = {
        usage,
        limit: limit === undefined || limit > UNLIMITED ? undefined : limit,
        inactiveFile: stat?.get('inactive_file') ?? 0,
        rss: stat?.get('anon') ?? 0,
        pageFaults: stat?.get('pgfault') ?? 0,
        majorPageFaults: stat?.get('pgmajfault') ?? 0,
      };
    }
    if (pids !== undefined) out.pids = pids;
    if (processes !== undefined) out.processes = processes;
    return out;
  }
}

/** Figures of several cgroups added up (a pod with no cgroup parent: its pause and containers' cgroups). */
export function sumFigures(all: readonly CgroupFigures[]): CgroupFigures | undefined {
  if (all.length === 0) return undefined;
  const out: CgroupFigures = {};
  for (const f of all) {
    if (f.cpuUsageNs !== undefined) out.cpuUsageNs = (out.cpuUsageNs ?? 0) + f.cpuUsageNs;
    if (f.pids !== undefined) out.pids = (out.pids ?? 0) + f.pids;
    if (f.processes !== undefined) out.processes = (out.processes ?? 0) + f.processes;
    if (f.memory) {
      const m = out.memory;
      out.memory = m
        ? {
            usage: m.usage + f.memory.usage,
            // Separate limits do not add up to one the pod is held to.
            limit: undefined,
            inactiveFile: m.inactiveFile + f.memory.inactiveFile,
            rss: m.rss + f.memory.rss,
            pageFaults: m.pageFaults + f.memory.pageFaults,
            majorPageFaults: m.majorPageFaults + f.memory.majorPageFaults,
          }
        : { ...f.memory, limit: all.length === 1 ? f.memory.limit : undefined };
    }
  }
  return out;
}
