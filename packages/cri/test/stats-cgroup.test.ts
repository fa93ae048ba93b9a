/**
 * The cgroup reader and the figures the CRI's stats are made of, on recorded cgroupfs trees:
 * test/fixtures/cgroup-v1 (a container's memory.stat recorded on this project's cgroup v1
 * machine, separate controller hierarchies) and test/fixtures/cgroup-v2 (a unified hierarchy
 * with systemd's kubepods slices). Trees with files removed or spoiled are copies in a temp dir.
 */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CgroupParseError,
  CgroupReader,
  CpuSampler,
  cgroupfsPath,
  expandSlice,
  memoryUsage,
  parseNetDev,
  workingSet,
} from '@berth/cri';

const FIXTURES = join(__dirname, 'fixtures');
const V1 = join(FIXTURES, 'cgroup-v1');
const V2 = join(FIXTURES, 'cgroup-v2');
const POD2 = '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice';

const v1 = (root = V1) => new CgroupReader({ root: join(root, 'sys'), proc: join(root, 'proc') });
const v2 = (root = V2) => new CgroupReader({ root: join(root, 'sys'), proc: join(root, 'proc') });

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'berth-stats-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A writable copy of a fixture tree. */
async function copyOf(tree: string, name: string): Promise<string> {
  const dir = join(tmp, name);
  await cp(tree, dir, { recursive: true });
  return dir;
}

describe('paths', () => {
  it('expands systemd slices and scopes as runc lays them out', () => {
    expect(expandSlice('kubepods-besteffort-pod1.slice')).toBe(POD2);
    expect(expandSlice('-.slice')).toBe('/');
    expect(cgroupfsPath('kubepods-besteffort-pod1.slice:cri-containerd:abc123')).toBe(
      `${POD2}/cri-containerd-abc123.scope`,
    );
    expect(cgroupfsPath('kubepods-besteffort-pod1.slice')).toBe(POD2);
    expect(cgroupfsPath('/k8s.io/abc123')).toBe('/k8s.io/abc123');
    expect(cgroupfsPath('k8s.io/abc123')).toBe('/k8s.io/abc123');
  });
});

describe('cgroup v1', () => {
  it('tells the layout from the root: no cgroup.controllers there', async () => {
    expect(await v1().mode()).toBe('v1');
    expect(await v2().mode()).toBe('v2');
  });

  it("reads a container's figures through its process' /proc/<pid>/cgroup", async () => {
    const r = v1();
    const loc = await r.ofPid(4242);
    expect(loc?.paths.get('memory')).toBe('/k8s.io/abc123');
    expect(await r.read(loc!)).toEqual({
      cpuUsageNs: 123456789012,
      memory: {
        usage: 8388608,
        limit: 67108864,
        inactiveFile: 1048576,
        rss: 5242880,
        pageFaults: 3210,
        majorPageFaults: 7,
      },
      pids: 3,
      processes: 2,
    });
  });

  it('finds the same cgroup from the spec path', async () => {
    const r = v1();
    expect(await r.read(await r.ofPath('/k8s.io/abc123'))).toEqual(await r.read((await r.ofPid(4242))!));
  });

  it('answers undefined for a process that is gone and for a cgroup that was removed', async () => {
    const r = v1();
    expect(await r.ofPid(999999)).toBeUndefined();
    expect(await r.ofPid(0)).toBeUndefined();
    expect(await r.read(await r.ofPath('/k8s.io/gone'))).toBeUndefined();
  });

  it('leaves out a controller whose files are missing, and reads the unlimited limit as none', async () => {
    const root = await copyOf(V1, 'v1-missing');
    await rm(join(root, 'sys/cpuacct'), { recursive: true });
    await writeFile(join(root, 'sys/memory/k8s.io/abc123/memory.limit_in_bytes'), '9223372036854771712\n');
    await rm(join(root, 'sys/memory/k8s.io/abc123/memory.stat'));
    const r = v1(root);
    const f = await r.read(await r.ofPath('/k8s.io/abc123'));
    expect(f?.cpuUsageNs).toBeUndefined();
    expect(f?.memory).toEqual({
      usage: 8388608,
      limit: undefined,
      inactiveFile: 0,
      rss: 0,
      pageFaults: 0,
      majorPageFaults: 0,
    });
  });

  it('throws CgroupParseError naming a file with bad contents', async () => {
    const root = await copyOf(V1, 'v1-bad');
    const file = join(root, 'sys/cpuacct/k8s.io/abc123/cpuacct.usage');
    await writeFile(file, 'lots\n');
    const r = v1(root);
    await expect(r.read(await r.ofPath('/k8s.io/abc123'))).rejects.toThrow(CgroupParseError);
    await expect(r.read(await r.ofPath('/k8s.io/abc123'))).rejects.toThrow(file);
    await writeFile(file, '1\n');
    await writeFile(join(root, 'sys/memory/k8s.io/abc123/memory.stat'), 'total_rss many\n');
    await expect(r.read(await r.ofPath('/k8s.io/abc123'))).rejects.toThrow('memory.stat');
  });
});

describe('cgroup v2', () => {
  it("reads a container's figures: cpu.stat usage_usec in ns, memory.current, memory.stat", async () => {
    const r = v2();
    const loc = await r.ofPid(5151);
    expect(loc?.paths.get('*')).toBe(`${POD2}/cri-containerd-abc123.scope`);
    expect(await r.read(loc!)).toEqual({
      cpuUsageNs: 2_500_000_000,
      memory: {
        usage: 10485760,
        limit: 33554432,
        inactiveFile: 2097152,
        rss: 4194304,
        pageFaults: 2048,
        majorPageFaults: 3,
      },
      pids: 2,
      processes: 1,
    });
  });

  it("reads a pod's slice from its cgroup parent, memory.max 'max' as no limit", async () => {
    const r = v2();
    const f = await r.read(await r.ofPath('kubepods-besteffort-pod1.slice'));
    expect(f?.cpuUsageNs).toBe(4_000_000_000);
    expect(f?.memory?.limit).toBeUndefined();
    expect(f?.memory?.usage).toBe(16777216);
    expect(f?.processes).toBe(2);
  });

  it('finds the scope of a systemd cgroupsPath', async () => {
    const r = v2();
    const f = await r.read(await r.ofPath('kubepods-besteffort-pod1.slice:cri-containerd:abc123'));
    expect(f?.cpuUsageNs).toBe(2_500_000_000);
  });

  it('answers undefined once the cgroup is removed; bad contents are an error naming the file', async () => {
    const root = await copyOf(V2, 'v2-bad');
    const scope = join(root, 'sys', POD2, 'cri-containerd-abc123.scope');
    const r = v2(root);
    const loc = await r.ofPath('kubepods-besteffort-pod1.slice:cri-containerd:abc123');
    await writeFile(join(scope, 'memory.max'), 'lots\n');
    await expect(r.read(loc)).rejects.toThrow(join(scope, 'memory.max'));
    await writeFile(join(scope, 'memory.max'), 'max\n');
    await writeFile(join(scope, 'cpu.stat'), 'usage_usec\n');
    await expect(r.read(loc)).rejects.toThrow(CgroupParseError);
    await rm(scope, { recursive: true });
    expect(await r.read(loc)).toBeUndefined();
  });

  it('a process without a v2 line has no cgroup', async () => {
    const root = await copyOf(V2, 'v2-noline');
    await writeFile(join(root, 'proc/5151/cgroup'), '4:memory:/x\n');
    expect(await v2(root).ofPid(5151)).toBeUndefined();
  });
});

describe('figures', () => {
  const m = { usage: 100, limit: 1000, inactiveFile: 30, rss: 50, pageFaults: 5, majorPageFaults: 1 };

  it('working set is usage minus inactive file pages, never below 0', () => {
    expect(workingSet(m)).toBe(70);
    expect(workingSet({ ...m, inactiveFile: 200 })).toBe(0);
  });

  it('available bytes are the limit minus the working set, 0 without a limit', () => {
    const u = memoryUsage(m, 7);
    expect(u).toEqual({
      timestamp: 7,
      workingSetBytes: { value: 70 },
      availableBytes: { value: 930 },
      usageBytes: { value: 100 },
      rssBytes: { value: 50 },
      pageFaults: { value: 5 },
      majorPageFaults: { value: 1 },
    });
    expect(memoryUsage({ ...m, limit: undefined }, 7).availableBytes).toEqual({ value: 0 });
    expect(memoryUsage({ ...m, limit: 60 }, 7).availableBytes).toEqual({ value: 0 });
  });

  it('usage_nano_cores is the rate since the previous sample of the same id', () => {
    const s = new CpuSampler();
    expect(s.sample('a', 1_000, 1e9).usageNanoCores).toEqual({ value: 0 });
    // half a core over 2 s
    expect(s.sample('a', 1_000 + 1e9, 3e9).usageNanoCores).toEqual({ value: 5e8 });
    // another id has its own history
    expect(s.sample('b', 5e9, 3e9).usageNanoCores).toEqual({ value: 0 });
    // a zero interval answers 0 and keeps the earlier sample
    expect(s.sample('a', 9e9, 3e9).usageNanoCores).toEqual({ value: 0 });
    expect(s.sample('a', 1_000 + 3e9, 5e9).usageNanoCores).toEqual({ value: 1e9 });
    expect(s.sample('a', 1_000 + 3e9, 5e9).usageCoreNanoSeconds).toEqual({ value: 1_000 + 3e9 });
    s.retain((id) => id === 'b');
    expect(s.has('a')).toBe(false);
    expect(s.has('b')).toBe(true);
  });

  it('reads eth0 counters from a recorded /proc/<pid>/net/dev, skipping malformed lines', async () => {
    const { readFile } = await import('node:fs/promises');
    const devs = parseNetDev(await readFile(join(V2, 'proc/5151/net/dev'), 'utf8'));
    expect(devs.get('eth0')).toEqual({ rxBytes: 123456, rxErrors: 2, txBytes: 65432, txErrors: 1 });
    expect(parseNetDev('eth0: 1 2 3\nbad line\n').size).toBe(0);
  });
});
