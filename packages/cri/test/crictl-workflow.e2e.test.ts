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
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import {
  buildImage,
  CRICTL,
  type Daemon,
  freePort,
  makeTempDir,
  pushToRegistry,
  type Registry,
  registryInstalled,
  removeDir,
  run,
  crictl as runCrictl,
  startBerthd,
  startRegistry,
} from '@berth/testkit';

const CAN_RUN =
  process.getuid?.() === 0 && existsSync(CRICTL) && existsSync('/usr/lib/cni/bridge') && registryInstalled();
const describeIf = CAN_RUN ? describe : describe.skip;

/** A bridge and subnet of this run's own, so parallel runs on one machine do not meet. */
const BRIDGE = `bcrw${process.pid % 100000}`;
const SUBNET_OCTET = 100 + (process.pid % 100);

function httpGet(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (b) => (body += b));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`GET http://${host}:${port}/ timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });

describeIf('crictl workflow against berthd', () => {
  let dir: string;
  let registry: Registry;
  let daemon: Daemon | undefined;
  let config: string;
  let busybox: string;
  let hostPort: number;

  const crictl = (...args: string[]) => runCrictl(daemon!.address, args);
  const ok = async (...args: string[]) => {
    const r = await crictl(...args);
    if (r.code !== 0) throw new Error(`crictl ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    return r.stdout.trim();
  };
  const json = async (cmd: string, ...args: string[]) => JSON.parse(await ok(cmd, '-o', 'json', ...args));

  function podConfig(name: string, ports: { host: number; container: number }[] = []): string {
    const file = join(dir, `${name}.pod.json`);
    mkdirSync(join(dir, 'logs', name), { recursive: true });
    writeFileSync(
      file,
      JSON.stringify({
        metadata: { name, namespace: 'e2e', uid: `uid-${name}`, attempt: 0 },
        hostname: name,
        log_directory: join(dir, 'logs', name),
        port_mappings: ports.map((p) => ({ protocol: 0, container_port: p.container, host_port: p.host })),
        linux: {},
      }),
    );
    return file;
  }

  function containerConfig(name: string, command: string[], image = busybox): string {
    const file = join(dir, `${name}.ctr.json`);
    writeFileSync(
      file,
      JSON.stringify({ metadata: { name }, image: { image }, command, log_path: `${name}.log`, linux: {} }),
    );
    return file;
  }

  /** Host-side traces of a pod: veths on our bridge, netns mounts, IPAM reservations, DNAT rules. */
  function hostTraces(): { veths: string[]; netns: string[]; ipam: string[]; dnat: string[] } {
    let veths: string[] = [];
    try {
      veths = sh('ip', ['-o', 'link', 'show', 'master', BRIDGE]).split('\n').filter(Boolean);
    } catch {
      veths = []; // no bridge: no veth either
    }
    // Pinned namespaces are mounts on files inside the netns directory (itself a mount point).
    const netns = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((mp) => mp.startsWith(dir) && /\/netns\/./.test(mp));
    const ipamDir = join(dir, 'ipam');
    const ipam = existsSync(ipamDir)
      ? readdirSync(ipamDir, { recursive: true, encoding: 'utf8' }).filter((f) =>
          /\d+\.\d+\.\d+\.\d+$/.test(f),
        )
      : [];
    const dnat = sh('iptables', ['-t', 'nat', '-S'])
      .split('\n')
      .filter((l) => l.includes(`--dport ${hostPort}`));
    return { veths, netns, ipam, dnat };
  }

  beforeAll(async () => {
    dir = makeTempDir('berth-crictl-');
    registry = await startRegistry();
    const base = buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } });
    const pause = buildImage({ layers: ['busybox'], config: { Entrypoint: ['/bin/sleep', '2147483647'] } });
    await pushToRegistry(registry.url, 'e2e/busybox', '1.0', base);
    await pushToRegistry(registry.url, 'e2e/pause', '3.6', pause);
    busybox = `${registry.host}/e2e/busybox:1.0`;
    hostPort = await freePort();
    const netd = join(dir, 'net.d');
    mkdirSync(netd, { recursive: true });
    writeFileSync(
      join(netd, '10-e2e.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'crictl-e2e',
        plugins: [
          {
            type: 'bridge',
            bridge: BRIDGE,
            isGateway: true,
            ipMasq: false,
            ipam: {
              type: 'host-local',
              dataDir: join(dir, 'ipam'),
              ranges: [[{ subnet: `10.${SUBNET_OCTET}.0.0/16` }]],
              routes: [{ dst: '0.0.0.0/0' }],
            },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      }),
    );
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    config = [
      'version = 2',
      `[${cri}]`,
      `  sandbox_image = "${registry.host}/e2e/pause:3.6"`,
      '  netns_mounts_under_state_dir = true',
      '  restrict_oom_score_adj = true',
      `[${cri}.cni]`,
      '  bin_dir = "/usr/lib/cni"',
      `  conf_dir = "${netd}"`,
      '',
    ].join('\n');
    daemon = await startBerthd({ config, dir: join(dir, 'berthd') });
  }, 120_000);

  afterAll(async () => {
    // Whatever a failed test left: pods through the CRI, then the daemon, bridge and files.
    if (daemon) {
      const pods = await crictl('pods', '-q').catch(() => undefined);
      for (const id of pods?.stdout.split('\n').filter(Boolean) ?? []) {
        await crictl('stopp', id).catch(() => {});
        await crictl('rmp', id).catch(() => {});
      }
      await daemon.dispose();
    }
    await registry?.stop();
    try {
      sh('ip', ['link', 'del', BRIDGE]);
    } catch {
      // never made, or gone
    }
    // berthd lifts its netns directory's self-bind when it stops with no pod left; a failed
    // test may leave pods, so lift whatever is still mounted under our directory, deepest first.
    const left = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((mp): mp is string => !!mp && mp.startsWith(dir))
      .sort((a, b) => b.length - a.length);
    for (const mp of left) await run('umount', ['-l', mp]).catch(() => {});
    if (dir) removeDir(dir);
  }, 120_000);

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
    expect(img.repoDigests[0]).toMatch(new RegExp(`^${registry.host}/e2e/busybox@sha256:`));
    const status = await json('inspecti', busybox);
    expect(status.status.id).toBe(img.id);
    const ctr = sh('ctr', ['--address', daemon!.address, '-n', 'k8s.io', 'images', 'ls', '-q']);
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
    expect(ip).toMatch(new RegExp(`^10\\.${SUBNET_OCTET}\\.`));

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

    expect(await eventually(() => httpGet(ip, 80))).toBe('hello from web\n');
    const gateway = ip.replace(/\.\d+$/, '.1');
    expect(await eventually(() => httpGet(gateway, hostPort))).toBe('hello from web\n');
    const traces = hostTraces();
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
    expect(hostTraces()).toEqual({ veths: [], netns: [], ipam: [], dnat: [] });
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
      const missing = `${registry.host}/e2e/nothing:here`;
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

    await daemon!.stop('SIGKILL');
    daemon = await startBerthd({ config, dir: join(dir, 'berthd') });

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
    expect(hostTraces()).toEqual({ veths: [], netns: [], ipam: [], dnat: [] });
  }, 120_000);

  it('rmi removes the image by tag', async () => {
    await ok('rmi', busybox);
    const images = await json('images');
    expect(images.images.some((i: { repoTags: string[] }) => i.repoTags.includes(busybox))).toBe(false);
  });
});
