/**
 * The crictl workflow a Kubernetes operator uses, against bin/berthd with stock crictl
 * (cri-tools 1.26.1 from ../shared/tools): version, info, pull, images, inspecti, runp, pods,
 * inspectp, create, start, ps, inspect, exec -s, stop, rm, stopp, rmp, rmi. The pod sits on a
 * CNI bridge (Debian's plugins): reachable from the host at its IP and through a hostPort, and
 * nothing of it is left on the host afterwards. Then berthd is SIGKILLed with a pod running
 * and restarted: the pod and its container are listed as before, and can be stopped and
 * removed with their network torn down. Needs root, runc, overlayfs, the CNI plugins, Debian's
 * docker-registry and a build.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  CRICTL,
  type CriDaemon,
  freePort,
  httpGet,
  registryInstalled,
  retry,
  startCriDaemon,
} from '@berth/testkit';

const CAN_RUN =
  process.getuid?.() === 0 && existsSync(CRICTL) && existsSync('/usr/lib/cni/bridge') && registryInstalled();
const describeIf = CAN_RUN ? describe : describe.skip;

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });

describeIf('crictl workflow against berthd', () => {
  let cri: CriDaemon;
  let busybox: string;
  let hostPort: number;

  const crictl = (...args: string[]) => cri.crictl(...args);
  const ok = (...args: string[]) => cri.ok(...args);
  const json = (cmd: string, ...args: string[]) => cri.json(cmd, ...args);

  function podConfig(name: string, ports: { host: number; container: number }[] = []): string {
    const logs = cri.logDir(name);
    return cri.writeJson(`${name}.pod`, {
      metadata: { name, namespace: 'e2e', uid: `uid-${name}`, attempt: 0 },
      hostname: name,
      log_directory: logs,
      port_mappings: ports.map((p) => ({ protocol: 0, container_port: p.container, host_port: p.host })),
      linux: {},
    });
  }

  function containerConfig(name: string, command: string[], image = busybox): string {
    return cri.writeJson(`${name}.ctr`, {
      metadata: { name },
      image: { image },
      command,
      log_path: `${name}.log`,
      linux: {},
    });
  }

  /** Host-side traces of a pod: veths on our bridge, netns mounts, IPAM reservations, DNAT rules. */
  async function hostTraces(): Promise<{ veths: string[]; netns: string[]; ipam: string[]; dnat: string[] }> {
    const net = cri.net!;
    // Pinned namespaces are mounts on files inside the netns directory (itself a mount point).
    const netns = cri.mounts().filter((mp) => /\/netns\/./.test(mp));
    return { veths: await net.veths(), netns, ipam: net.leases(), dnat: await net.dnat(hostPort) };
  }

  beforeAll(async () => {
    hostPort = await freePort();
    cri = await startCriDaemon({
      name: 'crictl',
      network: { portmap: true },
      images: {
        'e2e/busybox:1.0': { layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } },
      },
    });
    busybox = cri.image('e2e/busybox:1.0');
  }, 120_000);

  // Whatever a failed test left: pods, the daemon, mounts, bridge and files.
  afterAll(() => cri?.stop(), 120_000);

  it('version and info: the CRI runtime, RuntimeReady and NetworkReady from the conflist', async () => {
    expect(await ok('version')).toContain('RuntimeApiVersion:  v1');
    const info = await json('info');
    const cond = Object.fromEntries(
      info.status.conditions.map((c: { type: string; status: boolean }) => [c.type, c.status]),
    );
    expect(cond).toEqual({ RuntimeReady: true, NetworkReady: true });
  });

  it('pull, images, inspecti: the image in k8s.io, as ctr sees it too', async () => {
    const ref = await ok('pull', busybox);
    expect(ref).toMatch(/^Image is up to date for sha256:[0-9a-f]{64}$/);
    const images = await json('images');
    const img = images.images.find((i: { repoTags: string[] }) => i.repoTags.includes(busybox));
    expect(img).toBeDefined();
    expect(img.repoDigests[0]).toMatch(new RegExp(`^${cri.registry.host}/e2e/busybox@sha256:`));
    const status = await json('inspecti', busybox);
    expect(status.status.id).toBe(img.id);
    const ctr = sh('ctr', ['--address', cri.berthd.address, '-n', 'k8s.io', 'images', 'ls', '-q']);
    expect(ctr.split('\n')).toContain(busybox);
  });

  it('runp ... rmp: a pod on the bridge, its container served at the pod IP and a hostPort, nothing left after', async () => {
    const pod = podConfig('web', [{ host: hostPort, container: 80 }]);
    const podId = await ok('runp', pod);
    expect(podId).toMatch(/^[0-9a-f]{64}$/);
    expect(await ok('pods', '-q')).toContain(podId);
    const podStatus = await json('inspectp', podId);
    expect(podStatus.status.state).toBe('SANDBOX_READY');
    const ip: string = podStatus.status.network.ip;
    expect(ip.startsWith(`${cri.net!.subnet}.`)).toBe(true);

    const ctrCfg = containerConfig('httpd', [
      '/bin/sh',
      '-c',
      'mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec /bin/busybox httpd -f -p 80 -h /www',
    ]);
    const ctrId = await ok('create', podId, ctrCfg, pod);
    await ok('start', ctrId);
    const ps = await json('ps', '--pod', podId);
    expect(ps.containers.map((c: { id: string; state: string }) => [c.id, c.state])).toEqual([
      [ctrId, 'CONTAINER_RUNNING'],
    ]);
    expect((await json('inspect', ctrId)).status.state).toBe('CONTAINER_RUNNING');
    expect(await ok('exec', '-s', ctrId, '/bin/sh', '-c', 'echo out; echo err >&2')).toContain('out');

    expect(await retry(() => httpGet(`http://${ip}/`))).toBe('hello from web\n');
    const gateway = ip.replace(/\.\d+$/, '.1');
    expect(await retry(() => httpGet(`http://${gateway}:${hostPort}/`))).toBe('hello from web\n');
    const traces = await hostTraces();
    expect(traces.veths).toHaveLength(1);
    expect(traces.netns.length).toBeGreaterThanOrEqual(1);
    expect(traces.ipam).toHaveLength(1);
    expect(traces.dnat.length).toBeGreaterThanOrEqual(1);

    await ok('stop', ctrId);
    expect((await json('inspect', ctrId)).status.state).toBe('CONTAINER_EXITED');
    await ok('rm', ctrId);
    await ok('stopp', podId);
    await ok('stopp', podId); // a second stop is no error
    await ok('rmp', podId);
    expect(await ok('pods', '-q')).not.toContain(podId);
    expect(await hostTraces()).toEqual({ veths: [], netns: [], ipam: [], dnat: [] });
  });

  it("answers containerd's errors: unknown ids, a name in use, an image that does not exist", async () => {
    const unknown = await crictl('inspectp', 'f00dfeed');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/NotFound.*f00dfeed/);
    const pod = podConfig('dup');
    const podId = await ok('runp', pod);
    try {
      const again = await crictl('runp', pod);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toMatch(/AlreadyExists/);
      expect(again.stderr).toContain(podId);
      const missing = cri.image('e2e/nothing:here');
      const create = await crictl('create', podId, containerConfig('ghost', ['/bin/true'], missing), pod);
      expect(create.code).not.toBe(0);
      expect(create.stderr).toContain(missing);
      const inspect = await crictl('inspect', 'deadbeef00');
      expect(inspect.stderr).toMatch(/NotFound.*deadbeef00/);
    } finally {
      await ok('stopp', podId);
      await ok('rmp', podId);
    }
  });

  it('berthd SIGKILLed and restarted: the pod and container are listed as before, then stopped and removed with their network', async () => {
    const pod = podConfig('survivor');
    const podId = await ok('runp', pod);
    const ctrId = await ok('create', podId, containerConfig('sleeper', ['/bin/sleep', '3600']), pod);
    await ok('start', ctrId);
    const ip = (await json('inspectp', podId)).status.network.ip;

    await cri.berthd.stop('SIGKILL');
    await cri.restart();

    const pods = await json('pods');
    expect(pods.items.map((p: { id: string; state: string }) => [p.id, p.state])).toEqual([
      [podId, 'SANDBOX_READY'],
    ]);
    expect((await json('inspectp', podId)).status.network.ip).toBe(ip);
    expect((await json('inspect', ctrId)).status.state).toBe('CONTAINER_RUNNING');
    expect(await ok('exec', '-s', ctrId, '/bin/echo', 'still here')).toBe('still here');

    await ok('stop', '-t', '1', ctrId);
    await ok('rm', ctrId);
    await ok('stopp', podId);
    await ok('rmp', podId);
    expect(await hostTraces()).toEqual({ veths: [], netns: [], ipam: [], dnat: [] });
  }, 120_000);

  it('rmi removes the image by tag', async () => {
    await ok('rmi', busybox);
    const images = await json('images');
    expect(images.images.some((i: { repoTags: string[] }) => i.repoTags.includes(busybox))).toBe(false);
  });
});
