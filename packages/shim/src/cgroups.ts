/**
 * A container's cgroup, found from its init pid, read for Stats (containerd's
 * io.containerd.cgroups.v1/v2.Metrics shapes) and for OOM kills. Works on the unified
 * (v2) hierarchy and on v1 (this project's CI machine is v1).
 */
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP2_SUPER_MAGIC = 0x63677270;
/** cpuacct.stat counts USER_HZ ticks (100 per second on Linux). */
const NS_PER_TICK = 1e9 / 100;

export type CgroupMode = 'v1' | 'v2';

let cachedMode: CgroupMode | undefined;
export function cgroupMode(): CgroupMode {
  cachedMode ??= statfsSync('/sys/fs/cgroup').type === CGROUP2_SUPER_MAGIC ? 'v2' : 'v1';
  return cachedMode;
}

/** A v1 hierarchy mount: its controllers, where it is mounted and which cgroup is its root. */
interface V1Mount {
  controllers: string[];
  mountPoint: string;
  root: string;
}

/** The v1 cgroup mounts, from a mountinfo text. */
export function parseV1Mounts(mountinfo: string): V1Mount[] {
  const out: V1Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep === -1) continue;
    const before = line.slice(0, sep).split(' ');
    const after = line.slice(sep + 3).split(' ');
    if (after[0] !== 'cgroup') continue;
    const controllers = (after[2] ?? '').split(',').filter((o) => o !== 'rw' && o !== 'ro');
    out.push({ controllers, mountPoint: before[4], root: before[3] });
  }
  return out;
}

/** Controller (or `name=` hierarchy, or '' for v2) -> cgroup path, from /proc/<pid>/cgroup. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of m[1].split(',')) out.set(c, m[2]);
  }
  return out;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Reads an integer file; 'max' and missing files read as 0, as containerd reports them. */
function readUint(path: string): number {
  const text = readText(path)?.trim();
  if (text === undefined || text === '' || text === 'max') return 0;
  const n = Number(text.split(/\s+/)[0]);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** `key value` lines (memory.stat, cpu.stat, memory.events, oom_control). */
export function parseKeyValues(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

function deviceName(major: number, minor: number): string {
  const uevent = readText(`/sys/dev/block/${major}:${minor}/uevent`);
  const m = uevent ? /^DEVNAME=(.*)$/m.exec(uevent) : null;
  return m ? `/dev/${m[1]}` : '';
}

/** blkio `MAJ:MIN Op value` lines. */
export function parseBlkio(text: string | undefined): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+) (\S+) (\d+)$/.exec(line.trim());
    if (!m) continue;
    const major = Number(m[1]);
    const minor = Number(m[2]);
    out.push({ op: m[3], device: deviceName(major, minor), major, minor, value: Number(m[4]) });
  }
  return out;
}

/** io.stat `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..` lines. */
export function parseIoStat(text: string | undefined): Record<string, number>[] {
  const out: Record<string, number>[] = [];
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+) (.*)$/.exec(line.trim());
    if (!m) continue;
    const entry: Record<string, number> = { major: Number(m[1]), minor: Number(m[2]) };
    for (const kv of m[3].split(' ')) {
      const [k, v] = kv.split('=');
      if (k === 'rbytes' || k === 'wbytes' || k === 'rios' || k === 'wios') entry[k] = Number(v);
    }
    out.push(entry);
  }
  return out;
}

const camel = (s: string): string => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

// memory.stat (v1) keys whose Metrics field is not simply the camel-cased key.
const V1_MEMORY_KEYS: Record<string, string> = {
  pgpgin: 'pgPgIn',
  pgpgout: 'pgPgOut',
  pgfault: 'pgFault',
  pgmajfault: 'pgMajFault',
  hierarchical_memsw_limit: 'hierarchicalSwapLimit',
  total_pgpgin: 'totalPgPgIn',
  total_pgpgout: 'totalPgPgOut',
  total_pgfault: 'totalPgFault',
  total_pgmajfault: 'totalPgMajFault',
};
const V1_MEMORY_FIELDS = new Set([
  'cache',
  'rss',
  'rssHuge',
  'mappedFile',
  'dirty',
  'writeback',
  'pgPgIn',
  'pgPgOut',
  'pgFault',
  'pgMajFault',
  'inactiveAnon',
  'activeAnon',
  'inactiveFile',
  'activeFile',
  'unevictable',
  'hierarchicalMemoryLimit',
  'hierarchicalSwapLimit',
  'totalCache',
  'totalRss',
  'totalRssHuge',
  'totalMappedFile',
  'totalDirty',
  'totalWriteback',
  'totalPgPgIn',
  'totalPgPgOut',
  'totalPgFault',
  'totalPgMajFault',
  'totalInactiveAnon',
  'totalActiveAnon',
  'totalInactiveFile',
  'totalActiveFile',
  'totalUnevictable',
]);

const V2_MEMORY_FIELDS = new Set([
  'anon',
  'file',
  'kernelStack',
  'slab',
  'sock',
  'shmem',
  'fileMapped',
  'fileDirty',
  'fileWriteback',
  'anonThp',
  'inactiveAnon',
  'activeAnon',
  'inactiveFile',
  'activeFile',
  'unevictable',
  'slabReclaimable',
  'slabUnreclaimable',
  'pgfault',
  'pgmajfault',
  'workingsetRefault',
  'workingsetActivate',
  'workingsetNodereclaim',
  'pgrefill',
  'pgscan',
  'pgsteal',
  'pgactivate',
  'pgdeactivate',
  'pglazyfree',
  'pglazyfreed',
  'thpFaultAlloc',
  'thpCollapseAlloc',
]);

export interface CgroupStats {
  typeName: 'io.containerd.cgroups.v1.Metrics' | 'io.containerd.cgroups.v2.Metrics';
  metrics: Record<string, unknown>;
}

export class Cgroup {
  private constructor(
    readonly mode: CgroupMode,
    /** controller -> directory (v2: '' -> the one directory). */
    private readonly dirs: Map<string, string>,
  ) {}

  /** The cgroup of a live process, or undefined when it cannot be read (the process is gone). */
  static ofPid(pid: number, mode: CgroupMode = cgroupMode()): Cgroup | undefined {
    const text = readText(`/proc/${pid}/cgroup`);
    if (text === undefined) return undefined;
    const paths = parseProcCgroup(text);
    const dirs = new Map<string, string>();
    if (mode === 'v2') {
      const p = paths.get('');
      if (p === undefined) return undefined;
      dirs.set('', join('/sys/fs/cgroup', p));
    } else {
      for (const m of parseV1Mounts(readText('/proc/self/mountinfo') ?? '')) {
        for (const c of m.controllers) {
          const p = paths.get(c);
          if (p === undefined) continue;
          const rel = m.root !== '/' && p.startsWith(m.root) ? p.slice(m.root.length) : p;
          dirs.set(c, join(m.mountPoint, rel));
        }
      }
    }
    return new Cgroup(mode, dirs);
  }

  /** A directory for tests and for callers that know the layout. */
  static at(mode: CgroupMode, dirs: Record<string, string>): Cgroup {
    return new Cgroup(mode, new Map(Object.entries(dirs)));
  }

  private file(controller: string, name: string): string {
    const dir = this.dirs.get(this.mode === 'v2' ? '' : controller);
    return dir === undefined ? '/nonexistent' : join(dir, name);
  }

  exists(): boolean {
    const dir = this.dirs.get(this.mode === 'v2' ? '' : 'memory') ?? this.dirs.values().next().value;
    return dir !== undefined && existsSync(dir);
  }

  /** How many processes the kernel's OOM killer killed in this cgroup so far. */
  oomKills(): number {
    if (this.mode === 'v2') return parseKeyValues(readText(this.file('', 'memory.events'))).oom_kill ?? 0;
    return parseKeyValues(readText(this.file('memory', 'memory.oom_control'))).oom_kill ?? 0;
  }

  /** The memory.events file to watch for OOM notifications (v2 only; v1 has no inotify). */
  memoryEventsPath(): string | undefined {
    return this.mode === 'v2' ? this.file('', 'memory.events') : undefined;
  }

  stats(): CgroupStats {
    return this.mode === 'v2'
      ? { typeName: 'io.containerd.cgroups.v2.Metrics', metrics: this.statsV2() }
      : { typeName: 'io.containerd.cgroups.v1.Metrics', metrics: this.statsV1() };
  }

  private statsV1(): Record<string, unknown> {
    const f = (c: string, n: string): string => this.file(c, n);
    const memoryStat: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(parseKeyValues(readText(f('memory', 'memory.stat'))))) {
      const field = V1_MEMORY_KEYS[k] ?? camel(k);
      if (V1_MEMORY_FIELDS.has(field)) memoryStat[field] = v;
    }
    const entry = (prefix: string) => ({
      usage: readUint(f('memory', `${prefix}.usage_in_bytes`)),
      max: readUint(f('memory', `${prefix}.max_usage_in_bytes`)),
      failcnt: readUint(f('memory', `${prefix}.failcnt`)),
      limit: readUint(f('memory', `${prefix}.limit_in_bytes`)),
    });
    memoryStat.usage = entry('memory');
    memoryStat.swap = entry('memory.memsw');
    memoryStat.kernel = entry('memory.kmem');
    memoryStat.kernelTcp = entry('memory.kmem.tcp');
    const cpuacct = parseKeyValues(readText(f('cpuacct', 'cpuacct.stat')));
    const throttle = parseKeyValues(readText(f('cpu', 'cpu.stat')));
    const perCpu = (readText(f('cpuacct', 'cpuacct.usage_percpu')) ?? '')
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
    const oom = parseKeyValues(readText(f('memory', 'memory.oom_control')));
    let serviceBytes = parseBlkio(readText(f('blkio', 'blkio.io_service_bytes_recursive')));
    let serviced = parseBlkio(readText(f('blkio', 'blkio.io_serviced_recursive')));
    if (serviceBytes.length === 0 && serviced.length === 0) {
      serviceBytes = parseBlkio(readText(f('blkio', 'blkio.throttle.io_service_bytes_recursive')));
      serviced = parseBlkio(readText(f('blkio', 'blkio.throttle.io_serviced_recursive')));
    }
    return {
      pids: { current: readUint(f('pids', 'pids.current')), limit: readUint(f('pids', 'pids.max')) },
      cpu: {
        usage: {
          total: readUint(f('cpuacct', 'cpuacct.usage')),
          user: (cpuacct.user ?? 0) * NS_PER_TICK,
          kernel: (cpuacct.system ?? 0) * NS_PER_TICK,
          perCpu,
        },
        throttling: {
          periods: throttle.nr_periods ?? 0,
          throttledPeriods: throttle.nr_throttled ?? 0,
          throttledTime: throttle.throttled_time ?? 0,
        },
      },
      memory: memoryStat,
      memoryOomControl: {
        oomKillDisable: oom.oom_kill_disable ?? 0,
        underOom: oom.under_oom ?? 0,
        oomKill: oom.oom_kill ?? 0,
      },
      blkio: { ioServiceBytesRecursive: serviceBytes, ioServicedRecursive: serviced },
    };
  }

  private statsV2(): Record<string, unknown> {
    const f = (n: string): string => this.file('', n);
    const memory: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(parseKeyValues(readText(f('memory.stat'))))) {
      const field = camel(k);
      if (V2_MEMORY_FIELDS.has(field)) memory[field] = v;
    }
    memory.usage = readUint(f('memory.current'));
    memory.usageLimit = readUint(f('memory.max'));
    memory.swapUsage = readUint(f('memory.swap.current'));
    memory.swapLimit = readUint(f('memory.swap.max'));
    const cpu = parseKeyValues(readText(f('cpu.stat')));
    const events = parseKeyValues(readText(f('memory.events')));
    return {
      pids: { current: readUint(f('pids.current')), limit: readUint(f('pids.max')) },
      cpu: {
        usageUsec: cpu.usage_usec ?? 0,
        userUsec: cpu.user_usec ?? 0,
        systemUsec: cpu.system_usec ?? 0,
        nrPeriods: cpu.nr_periods ?? 0,
        nrThrottled: cpu.nr_throttled ?? 0,
        throttledUsec: cpu.throttled_usec ?? 0,
      },
      memory,
      memoryEvents: {
        low: events.low ?? 0,
        high: events.high ?? 0,
        max: events.max ?? 0,
        oom: events.oom ?? 0,
        oomKill: events.oom_kill ?? 0,
      },
      io: { usage: parseIoStat(readText(f('io.stat'))) },
    };
  }
}
