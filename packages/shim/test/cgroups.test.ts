import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Cgroup,
  parseBlkio,
  parseIoStat,
  parseKeyValues,
  parseProcCgroup,
  parseV1Mounts,
} from '../src/cgroups';
import { decodeShimMessage, encodeShimMessage } from '../src/protos';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cg-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function files(base: string, entries: Record<string, string>): void {
  mkdirSync(base, { recursive: true });
  for (const [name, text] of Object.entries(entries)) writeFileSync(join(base, name), text);
}

test('parses mountinfo, /proc/<pid>/cgroup and the stat file formats', () => {
  const mounts = parseV1Mounts(
    [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
      '35 31 0:32 /outer /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    ].join('\n'),
  );
  expect(mounts).toEqual([
    { controllers: ['cpu', 'cpuacct'], mountPoint: '/sys/fs/cgroup/cpu,cpuacct', root: '/' },
    { controllers: ['memory'], mountPoint: '/sys/fs/cgroup/memory', root: '/outer' },
  ]);
  const paths = parseProcCgroup('4:memory:/outer/c1\n2:cpu,cpuacct:/c1\n0::/c1\n');
  expect(paths.get('memory')).toBe('/outer/c1');
  expect(paths.get('cpuacct')).toBe('/c1');
  expect(paths.get('')).toBe('/c1');
  expect(parseKeyValues('cache 10\nrss 20\nbad\nx y\n')).toEqual({ cache: 10, rss: 20 });
  expect(parseBlkio('8:0 Read 100\n8:0 Write 5\nTotal 105\n')).toEqual([
    expect.objectContaining({ op: 'Read', major: 8, minor: 0, value: 100 }),
    expect.objectContaining({ op: 'Write', major: 8, minor: 0, value: 5 }),
  ]);
  expect(parseIoStat('8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0\n')).toEqual([
    { major: 8, minor: 0, rbytes: 1, wbytes: 2, rios: 3, wios: 4 },
  ]);
});

test('v1 stats come out as io.containerd.cgroups.v1.Metrics and survive the wire', () => {
  files(join(dir, 'memory'), {
    'memory.stat':
      'cache 4096\nrss 8192\npgpgin 3\nhierarchical_memsw_limit 99\ntotal_rss 8192\nunknown_key 1\n',
    'memory.usage_in_bytes': '12288\n',
    'memory.max_usage_in_bytes': '20000\n',
    'memory.limit_in_bytes': '1073741824\n',
    'memory.failcnt': '0\n',
    'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
  });
  files(join(dir, 'cpuacct'), {
    'cpuacct.usage': '5000000\n',
    'cpuacct.usage_percpu': '3000000 2000000 \n',
    'cpuacct.stat': 'user 3\nsystem 2\n',
  });
  files(join(dir, 'cpu'), { 'cpu.stat': 'nr_periods 4\nnr_throttled 1\nthrottled_time 77\n' });
  files(join(dir, 'pids'), { 'pids.current': '3\n', 'pids.max': 'max\n' });
  const cg = Cgroup.at('v1', {
    memory: join(dir, 'memory'),
    cpuacct: join(dir, 'cpuacct'),
    cpu: join(dir, 'cpu'),
    pids: join(dir, 'pids'),
    blkio: join(dir, 'blkio'),
  });
  expect(cg.exists()).toBe(true);
  expect(cg.oomKills()).toBe(2);
  const { typeName, metrics } = cg.stats();
  expect(typeName).toBe('io.containerd.cgroups.v1.Metrics');
  const back = decodeShimMessage<any>(typeName, encodeShimMessage(typeName, metrics));
  expect(back.pids).toEqual({ current: 3, limit: 0 });
  expect(back.cpu.usage).toEqual({
    total: 5000000,
    user: 30000000,
    kernel: 20000000,
    perCpu: [3000000, 2000000],
  });
  expect(back.cpu.throttling).toEqual({ periods: 4, throttledPeriods: 1, throttledTime: 77 });
  expect(back.memory).toMatchObject({
    cache: 4096,
    rss: 8192,
    pgPgIn: 3,
    hierarchicalSwapLimit: 99,
    totalRss: 8192,
  });
  expect(back.memory.usage).toEqual({ usage: 12288, max: 20000, failcnt: 0, limit: 1073741824 });
  expect(back.memoryOomControl.oomKill).toBe(2);
});

test('v2 stats come out as io.containerd.cgroups.v2.Metrics; OOM kills come from memory.events', () => {
  files(dir, {
    'memory.stat': 'anon 100\nfile 200\nkernel_stack 8\npgfault 5\n',
    'memory.current': '300\n',
    'memory.max': 'max\n',
    'memory.events': 'low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n',
    'cpu.stat': 'usage_usec 10\nuser_usec 6\nsystem_usec 4\n',
    'pids.current': '2\n',
    'pids.max': '100\n',
    'io.stat': '8:0 rbytes=1 wbytes=2 rios=3 wios=4\n',
  });
  const cg = Cgroup.at('v2', { '': dir });
  expect(cg.oomKills()).toBe(1);
  expect(cg.memoryEventsPath()).toBe(join(dir, 'memory.events'));
  const { typeName, metrics } = cg.stats();
  expect(typeName).toBe('io.containerd.cgroups.v2.Metrics');
  const back = decodeShimMessage<any>(typeName, encodeShimMessage(typeName, metrics));
  expect(back.memory).toMatchObject({
    anon: 100,
    file: 200,
    kernelStack: 8,
    pgfault: 5,
    usage: 300,
    usageLimit: 0,
  });
  expect(back.memoryEvents).toEqual({ low: 0, high: 0, max: 4, oom: 2, oomKill: 1 });
  expect(back.cpu).toMatchObject({ usageUsec: 10, userUsec: 6, systemUsec: 4 });
  expect(back.pids).toEqual({ current: 2, limit: 100 });
  expect(back.io.usage).toEqual([{ major: 8, minor: 0, rbytes: 1, wbytes: 2, rios: 3, wios: 4 }]);
});

test('a cgroup whose directory is gone says so and reads as zeros', () => {
  const cg = Cgroup.at('v1', { memory: join(dir, 'gone') });
  expect(cg.exists()).toBe(false);
  expect(cg.oomKills()).toBe(0);
  expect(Cgroup.ofPid(2 ** 22 + 12345)).toBeUndefined();
});
