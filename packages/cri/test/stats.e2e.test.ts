/**
 * CRI stats end to end: bin/berthd and stock crictl (cri-tools 1.26.1): `crictl stats` and
 * `crictl statsp` (table and `-o json`), and the four RPCs straight over gRPC for their errors.
 * A container filling 32 MiB of /dev/shm shows a working set above that, a busy loop shows CPU
 * time and a CPU rate, a file written into the rootfs shows in the writable layer, the pod's eth0
 * counts the bytes of an HTTP exchange with the host. One pod has a cgroup parent (its figures
 * are that cgroup's), under containerd's runc shim; one has none and runs under berth's shim (its figures are its
 * pause's and containers' summed). Needs root, runc, overlayfs, the CNI plugins, docker-registry, a build.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CRICTL, type CriDaemon, httpGet, registryInstalled, retry, startCriDaemon } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const CAN_RUN =
  process.getuid?.() === 0 && existsSync(CRICTL) && existsSync('/usr/lib/cni/bridge') && registryInstalled();
const describeIf = CAN_RUN ? describe : describe.skip;

const MiB = 1024 * 1024;
const CRI_PROTO = join(__dirname, '../../api/proto/k8s.io/cri-api/runtime/v1/api.proto');
/** crictl's table output, without the screen-clearing escapes it starts with. */
const ESC = String.fromCharCode(27);
const table = (out: string) => out.replace(new RegExp(`${ESC}\\[[0-9;]*[A-Za-z]`, 'g'), '');

const eventually = <T>(fn: () => Promise<T> | T) => retry(fn, 20_000, 250);

interface U64 {
  value: string | number;
}
const n = (v: U64 | undefined): number => Number(v?.value ?? 0);

describeIf('CRI stats against berthd', () => {
  let cri: CriDaemon;
  let busybox: string;
  let podA = ''; // cgroup parent, runc handler (containerd's shim)
  let podB = ''; // no cgroup parent, default handler (berth's shim)
  let podAConfig = '';
  let podBConfig = '';
  let memId = '';
  let busyId = '';
  let webId = '';
  let idleId = ''; // created, never started

  const ok = (...args: string[]) => cri.ok(...args);
  const json = (cmd: string, ...args: string[]) => cri.json(cmd, ...args);

  /**
   * One RuntimeService call over gRPC, for what crictl does not call (ContainerStats,
   * PodSandboxStats). Decoded by protobufjs with int64 as strings: the stats' timestamps
   * (ns since the epoch) are beyond Number.MAX_SAFE_INTEGER, which berth's own decoder refuses.
   */
  async function call(method: string, req: object): Promise<any> {
    const def = loadSync(CRI_PROTO, { longs: String, enums: String, defaults: false, keepCase: false });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const client = new pkg.runtime.v1.RuntimeService(
      `unix://${cri.berthd.address}`,
      grpc.credentials.createInsecure(),
    );
    try {
      return await new Promise((resolve, reject) =>
        client[method](req, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))),
      );
    } finally {
      client.close();
    }
  }

  function podConfig(name: string, linux: object = {}): string {
    const logs = cri.logDir(name);
    return cri.writeJson(`${name}.pod`, {
      metadata: { name, namespace: 'stats', uid: `uid-${name}`, attempt: 0 },
      hostname: name,
      log_directory: logs,
      labels: { pod: name },
      linux,
    });
  }

  function containerConfig(name: string, command: string[], labels: Record<string, string> = {}): string {
    return cri.writeJson(`${name}.ctr`, {
      metadata: { name },
      image: { image: busybox },
      command,
      labels,
      log_path: `${name}.log`,
    });
  }

  async function startContainer(pod: string, podCfg: string, name: string, command: string[], labels = {}) {
    const id = await ok('create', pod, containerConfig(name, command, labels), podCfg);
    await ok('start', id);
    return id;
  }

  beforeAll(async () => {
    cri = await startCriDaemon({
      name: 'stats',
      network: {},
      images: {
        'e2e/busybox:1.0': { layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } },
      },
      pull: ['e2e/busybox:1.0'],
    });
    busybox = cri.image('e2e/busybox:1.0');

    podAConfig = podConfig('alpha', { cgroup_parent: cri.cgroupParent });
    podA = await ok('runp', '--runtime', 'runc', podAConfig);
    podBConfig = podConfig('beta');
    podB = await ok('runp', podBConfig);
    memId = await startContainer(podA, podAConfig, 'mem', [
      '/bin/sh',
      '-c',
      // tmpfs pages are charged to the writer's cgroup and are not file pages: all working set
      'dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 && dd if=/dev/zero of=/layer bs=1M count=2 && touch /ready && exec sleep 3600',
    ]);
    busyId = await startContainer(podA, podAConfig, 'busy', ['/bin/sh', '-c', 'while :; do :; done'], {
      tier: 'busy',
    });
    webId = await startContainer(podB, podBConfig, 'web', [
      '/bin/sh',
      '-c',
      'mkdir -p /www && echo hello > /www/index.html && exec /bin/busybox httpd -f -p 80 -h /www',
    ]);
    idleId = await ok('create', podB, containerConfig('idle', ['/bin/sleep', '3600']), podBConfig);
    await eventually(async () => {
      const out = await ok('exec', '-s', memId, '/bin/ls', '/ready');
      if (out !== '/ready') throw new Error('not ready yet');
    });
  }, 180_000);

  afterAll(() => cri?.stop(), 120_000);

  it('crictl stats -o json: the memory container has a working set above its 32 MiB, its file in the writable layer', async () => {
    const out = await json('stats', '--id', memId);
    expect(out.stats).toHaveLength(1);
    const s = out.stats[0];
    expect(s.attributes.id).toBe(memId);
    expect(s.attributes.metadata.name).toBe('mem');
    expect(n(s.memory.workingSetBytes)).toBeGreaterThan(32 * MiB);
    expect(n(s.memory.usageBytes)).toBeGreaterThanOrEqual(n(s.memory.workingSetBytes));
    // no memory limit: nothing available is reported, as containerd
    expect(n(s.memory.availableBytes)).toBe(0);
    expect(n(s.memory.pageFaults)).toBeGreaterThan(0);
    expect(Number(s.memory.timestamp)).toBeGreaterThan(0);
    expect(n(s.writableLayer.usedBytes)).toBeGreaterThanOrEqual(2 * MiB);
    expect(n(s.writableLayer.inodesUsed)).toBeGreaterThanOrEqual(2);
    expect(s.writableLayer.fsId.mountpoint).toMatch(/io\.containerd\.snapshotter\.v1\.overlayfs$/);
  });

  it('ContainerStats: a busy container shows CPU time, and a rate against the previous sample', async () => {
    const first = (await call('ContainerStats', { containerId: busyId })).stats;
    expect(n(first.cpu.usageCoreNanoSeconds)).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 500));
    const second = (await call('ContainerStats', { containerId: busyId.slice(0, 12) })).stats;
    expect(second.attributes.id).toBe(busyId);
    expect(n(second.cpu.usageCoreNanoSeconds)).toBeGreaterThan(n(first.cpu.usageCoreNanoSeconds));
    expect(n(second.cpu.usageNanoCores)).toBeGreaterThan(0);
    // a busy loop on one thread uses at most one core (and the machine has more than 0)
    expect(n(second.cpu.usageNanoCores)).toBeLessThanOrEqual(1.1e9);
  });

  it('crictl stats (table) shows the running containers with CPU % of the busy one', async () => {
    const rows = table(await ok('stats')).split('\n');
    expect(rows[0]).toMatch(/^CONTAINER\s+NAME\s+CPU %\s+MEM\s+DISK\s+INODES/);
    const busy = rows.find((r) => r.startsWith(busyId.slice(0, 13)));
    expect(busy).toBeDefined();
    const cpu = Number(busy!.split(/\s+/)[2]);
    expect(cpu).toBeGreaterThan(10);
  });

  it('a created container has its writable layer only; filters by pod, id prefix and label', async () => {
    const idle = (await call('ContainerStats', { containerId: idleId })).stats;
    expect(idle.attributes.id).toBe(idleId);
    expect(idle.cpu ?? null).toBeNull();
    expect(idle.memory ?? null).toBeNull();
    expect(idle.writableLayer.fsId.mountpoint).not.toBe('');

    const inB = await json('stats', '--all', '--pod', podB);
    expect(inB.stats.map((s: { attributes: { id: string } }) => s.attributes.id).sort()).toEqual(
      [webId, idleId].sort(),
    );
    const byPrefix = await json('stats', '--id', busyId.slice(0, 10));
    expect(byPrefix.stats.map((s: { attributes: { id: string } }) => s.attributes.id)).toEqual([busyId]);
    const byLabel = await json('stats', '--label', 'tier=busy');
    expect(byLabel.stats.map((s: { attributes: { id: string } }) => s.attributes.id)).toEqual([busyId]);
    const none = await json('stats', '--id', 'f00dfeed');
    expect(none.stats ?? []).toEqual([]);
  });

  it('statsp -o json: the cgroup parent pod holds its containers figures, processes and its eth0', async () => {
    const out = await json('statsp', '--id', podA);
    expect(out.stats).toHaveLength(1);
    const s = out.stats[0];
    expect(s.attributes.id).toBe(podA);
    expect(s.attributes.labels).toEqual({ pod: 'alpha' });
    expect(n(s.linux.memory.workingSetBytes)).toBeGreaterThan(32 * MiB);
    expect(n(s.linux.cpu.usageCoreNanoSeconds)).toBeGreaterThan(0);
    // mem's sleep and busy's sh; the pause process is not counted (containerd counts tasks' pids)
    expect(n(s.linux.process.processCount)).toBe(2);
    expect(s.linux.network.defaultInterface.name).toBe('eth0');
    expect(s.linux.containers.map((c: { attributes: { id: string } }) => c.attributes.id).sort()).toEqual(
      [memId, busyId].sort(),
    );
  });

  it("a pod's eth0 rx grows after traffic; a pod without a cgroup parent sums its containers", async () => {
    const ip = (await json('inspectp', podB)).status.network.ip as string;
    const before = (await json('statsp', '--id', podB)).stats[0];
    expect(await eventually(() => httpGet(`http://${ip}/`))).toBe('hello\n');
    for (let i = 0; i < 5; i++) await httpGet(`http://${ip}/`);
    const after = (await json('statsp', '--id', podB)).stats[0];
    const rx = (s: any) => n(s.linux.network.defaultInterface.rxBytes);
    const tx = (s: any) => n(s.linux.network.defaultInterface.txBytes);
    expect(rx(after)).toBeGreaterThan(rx(before) + 5 * 50);
    expect(tx(after)).toBeGreaterThan(tx(before));
    expect(n(after.linux.network.defaultInterface.rxErrors)).toBe(0);
    expect(n(after.linux.memory.workingSetBytes)).toBeGreaterThan(0);
    expect(n(after.linux.cpu.usageCoreNanoSeconds)).toBeGreaterThan(0);
    expect(n(after.linux.process.processCount)).toBe(1);
  });

  it('crictl statsp (table) and ListPodSandboxStats filters: labels, unknown ids', async () => {
    const out = table(await ok('statsp'));
    expect(out).toMatch(/^POD\s+POD ID\s+CPU %\s+MEM/);
    expect(out).toContain('alpha');
    expect(out).toContain('beta');
    const byLabel = await json('statsp', '--label', 'pod=beta');
    expect(byLabel.stats.map((s: { attributes: { id: string } }) => s.attributes.id)).toEqual([podB]);
    expect((await json('statsp', '--id', 'f00dfeed')).stats ?? []).toEqual([]);
  });

  it('unknown ids are NotFound naming them; a stopped pod is FailedPrecondition and left out of the list', async () => {
    await expect(call('ContainerStats', { containerId: 'deadbeef00' })).rejects.toMatchObject({
      code: 5,
      details: expect.stringContaining('deadbeef00'),
    });
    await expect(call('PodSandboxStats', { podSandboxId: 'f00dfeed11' })).rejects.toMatchObject({
      code: 5,
      details: expect.stringContaining('f00dfeed11'),
    });
    const podC = await ok('runp', podConfig('gamma'));
    await ok('stopp', podC);
    await expect(call('PodSandboxStats', { podSandboxId: podC })).rejects.toMatchObject({
      code: 9,
      details: expect.stringContaining(podC),
    });
    const all = await json('statsp');
    expect(all.stats.map((s: { attributes: { id: string } }) => s.attributes.id).sort()).toEqual(
      [podA, podB].sort(),
    );
    await ok('rmp', podC);
  });

  it('a container that exited keeps its writable layer and loses its cgroup figures, no error', async () => {
    await ok('stop', '-t', '0', busyId);
    const list = await call('ListContainerStats', {
      filter: { id: '', podSandboxId: podA, labelSelector: {} },
    });
    const busy = list.stats.find((s: { attributes: { id: string } }) => s.attributes.id === busyId);
    expect(busy.cpu ?? null).toBeNull();
    expect(busy.memory ?? null).toBeNull();
    expect(busy.writableLayer).toBeDefined();
    const pod = (await call('PodSandboxStats', { podSandboxId: podA })).stats;
    expect(n(pod.linux.process.processCount)).toBe(1);
  });
});
