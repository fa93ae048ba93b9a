/**
 * The CRI's stats messages from raw figures, as containerd 1.6 computes them: the working
 * set is usage minus inactive file pages, available bytes the limit minus the working set
 * (0 with no limit), usage_nano_cores the CPU rate since the previous sample of the same
 * container or pod.
 */
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import type { wire } from '@berth/api';
import type { MemoryFigures } from './cgroup';

const u64 = (value: number): wire.cri.UInt64Value => ({ value });

export function workingSet(m: MemoryFigures): number {
  return m.inactiveFile < m.usage ? m.usage - m.inactiveFile : 0;
}

export function memoryUsage(m: MemoryFigures, timestamp: number): wire.cri.MemoryUsage {
  const ws = workingSet(m);
  return {
    timestamp,
    workingSetBytes: u64(ws),
    availableBytes: u64(m.limit !== undefined && m.limit > ws ? m.limit - ws : 0),
    usageBytes: u64(m.usage),
    rssBytes: u64(m.rss),
    pageFaults: u64(m.pageFaults),
    majorPageFaults: u64(m.majorPageFaults),
  };
}

/**
 * The last CPU sample per container or pod id, as containerd keeps one in its stores: each
 * call's rate is measured against the previous call's sample, which it then replaces. The
 * first sample of an id answers 0.
 */
export class CpuSampler {
  private readonly last = new Map<string, { usageNs: number; at: number }>();

  /** `at` in nanoseconds since the epoch. */
  sample(id: string, usageNs: number, at: number): wire.cri.CpuUsage {
    const prev = this.last.get(id);
    let rate = 0;
    if (prev) {
      const elapsed = at - prev.at;
      // A zero or negative interval answers 0 and keeps the older sample, as containerd.
      if (elapsed <= 0) return { timestamp: at, usageCoreNanoSeconds: u64(usageNs), usageNanoCores: u64(0) };
      rate = usageNs >= prev.usageNs ? Math.floor(((usageNs - prev.usageNs) / elapsed) * 1e9) : 0;
    }
    this.last.set(id, { usageNs, at });
    return { timestamp: at, usageCoreNanoSeconds: u64(usageNs), usageNanoCores: u64(rate) };
  }

  /** Forgets the samples of ids no longer known. */
  retain(live: (id: string) => boolean): void {
    for (const id of this.last.keys()) if (!live(id)) this.last.delete(id);
  }

  has(id: string): boolean {
    return this.last.has(id);
  }
}

export interface InterfaceCounters {
  rxBytes: number;
  rxErrors: number;
  txBytes: number;
  txErrors: number;
}

/**
 * /proc/net/dev: two header lines, then `iface: rx bytes packets errs drop fifo frame
 * compressed multicast tx bytes packets errs ...`. Malformed lines are skipped.
 */
export function parseNetDev(text: string): Map<string, InterfaceCounters> {
  const out = new Map<string, InterfaceCounters>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    const name = line.slice(0, colon).trim();
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    if (name === '' || f.length < 16 || !f.every((v) => /^\d+$/.test(v))) continue;
    out.set(name, {
      rxBytes: Number(f[0]),
      rxErrors: Number(f[2]),
      txBytes: Number(f[8]),
      txErrors: Number(f[10]),
    });
  }
  return out;
}

/**
 * An interface's counters in the network namespace of a process, read from its
 * /proc/<pid>/net/dev (procfs answers for the reader's namespace only through /proc/self, for
 * another pid it shows that pid's): no namespace is entered. Undefined when the process or
 * the interface is gone.
 */
export async function interfaceCounters(
  proc: string,
  pid: number,
  iface: string,
): Promise<InterfaceCounters | undefined> {
  if (!(pid > 0)) return undefined;
  try {
    return parseNetDev(await readFile(posix.join(proc, String(pid), 'net', 'dev'), 'utf8')).get(iface);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH' || code === 'EINVAL') return undefined;
    throw e;
  }
}

export function matchLabels(
  selector: Record<string, string> | undefined,
  labels: Record<string, string>,
): boolean {
  for (const [k, v] of Object.entries(selector ?? {})) if (labels[k] !== v) return false;
  return true;
}
