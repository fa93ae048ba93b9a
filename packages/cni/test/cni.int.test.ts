import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cni, cacheFile, createNetns, netnsExists, releaseNetnsDir, removeNetns } from '@berth/cni';
import { httpGetRetry, removeDnatChains } from '@berth/testkit';

// Root, the Debian CNI plugins in /usr/lib/cni, iptables and iproute2: a real bridge, real
// host-local leases and real portmap DNAT rules, all removed again in afterAll.
const run = promisify(execFile);
const sh = async (cmd: string, ...args: string[]) => (await run(cmd, args)).stdout;

const BIN = '/usr/lib/cni';
const BRIDGE = `bcni${process.pid % 100000}`;
const NET = `berth-int-${process.pid}`;
const ids: string[] = [];
const netnsPaths: string[] = [];
const servers: ChildProcess[] = [];
let root: string;
let confDir: string;
let cacheDir: string;
let ipamDir: string;
let nsDir: string;
let subnet: string; // "10.99.N"
let ipForward: string;

const conflist = (extra: object[] = []) => ({
  cniVersion: '1.0.0',
  name: NET,
  plugins: [
    {
      type: 'bridge',
      bridge: BRIDGE,
      isGateway: true,
      ipMasq: false,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: `${subnet}.0/24` }]],
        routes: [{ dst: '0.0.0.0/0' }],
        dataDir: ipamDir,
      },
    },
    { type: 'portmap', capabilities: { portMappings: true } },
    ...extra,
  ],
});

const newCni = () => new Cni({ binDirs: [BIN], confDir, cacheDir });

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

async function newNetns(name: string): Promise<string> {
  const p = await createNetns(nsDir, name);
  netnsPaths.push(p);
  return p;
}

// busybox httpd in the pod's namespace, in the foreground so this test owns its pid
async function serve(netns: string, port: number, body: string): Promise<void> {
  const www = join(root, `www-${port}`);
  await mkdir(www, { recursive: true });
  await writeFile(join(www, 'index.html'), body);
  const child = spawn(
    'nsenter',
    [`--net=${netns}`, '/bin/busybox', 'httpd', '-f', '-p', String(port), '-h', www],
    {
      stdio: 'ignore',
    },
  );
  servers.push(child);
}

const natRules = () => sh('iptables', '-w', '-t', 'nat', '-S');
const linkExists = async (name: string) =>
  run('ip', ['link', 'show', 'dev', name]).then(
    () => true,
    () => false,
  );

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-cni-int-'));
  confDir = join(root, 'net.d');
  cacheDir = join(root, 'cache');
  ipamDir = join(root, 'ipam');
  nsDir = join(root, 'netns');
  await mkdir(confDir);
  ipForward = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
  const routes = await sh('ip', '-4', 'route');
  for (;;) {
    const n = 1 + Math.floor(Math.random() * 254);
    if (!routes.includes(`10.99.${n}.`)) {
      subnet = `10.99.${n}`;
      break;
    }
  }
  await writeFile(join(confDir, '10-berth.conflist'), JSON.stringify(conflist()));
});

afterAll(async () => {
  for (const s of servers) s.kill('SIGKILL');
  const cni = newCni();
  await cni.load().catch(() => {});
  for (const id of ids) await cni.remove(id, '').catch(() => {});
  for (const p of netnsPaths) await removeNetns(p).catch(() => {});
  // createNetns bound the dir onto itself to make it shared
  await run('umount', [nsDir]).catch(() => {});
  await run('ip', ['link', 'del', BRIDGE]).catch(() => {});
  // portmap's per-container chains, if a failed test left any: only those for our subnet
  await removeDnatChains(subnet);
  // the bridge plugin turns forwarding on for a gateway bridge
  if (ipForward) await writeFile('/proc/sys/net/ipv4/ip_forward', ipForward).catch(() => {});
  await rm(root, { recursive: true, force: true });
});

describe('network namespaces', () => {
  test('create pins a namespace that outlives its processes; remove is idempotent', async () => {
    const p = await newNetns('pin-test');
    expect(p).toBe(join(nsDir, 'pin-test'));
    expect(await netnsExists(p)).toBe(true);
    // a namespace of its own, not the host's, with only lo in it
    expect((await stat(p)).ino).not.toBe((await stat('/proc/self/ns/net')).ino);
    const inside = await sh('nsenter', `--net=${p}`, 'ip', '-o', 'link');
    expect(inside.trim().split('\n')).toHaveLength(1);
    expect(inside).toContain(': lo:');
    // the dir is a shared mount, as ip netns makes /run/netns
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    expect(info.split('\n').some((l) => l.split(' ')[4] === nsDir && / shared:\d+/.test(l))).toBe(true);
    await expect(createNetns(nsDir, 'pin-test')).rejects.toMatchObject({ code: 'ERR_ALREADY_EXISTS' });
    await expect(createNetns(nsDir, '../x')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await removeNetns(p);
    expect(existsSync(p)).toBe(false);
    expect(await netnsExists(p)).toBe(false);
    await removeNetns(p);
    expect(await netnsExists('/proc/self/ns/net')).toBe(true);
    await writeFile(join(root, 'plain'), '');
    expect(await netnsExists(join(root, 'plain'))).toBe(false);
  });
});

describe('releaseNetnsDir', () => {
  test('lifts the directory self-bind only once no namespace is pinned in it', async () => {
    const dir = join(root, 'own-netns');
    const mountedDir = async () =>
      (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === dir);
    const p = await createNetns(dir, 'held');
    expect(await mountedDir()).toBe(true);
    expect(await releaseNetnsDir(dir)).toBe(false);
    expect(await mountedDir()).toBe(true);
    expect(await netnsExists(p)).toBe(true);
    await removeNetns(p);
    expect(await releaseNetnsDir(dir)).toBe(true);
    expect(await mountedDir()).toBe(false);
    expect(await releaseNetnsDir(dir)).toBe(true);
  });
});

describe('bridge + host-local + portmap', () => {
  test('setup: IP reported and reachable, hostPort forwarded; remove takes it all away; twice is fine', async () => {
    const id = `cniint-a-${process.pid}`;
    ids.push(id);
    const ns = await newNetns('pod-a');
    const hostPort = await freePort();
    const cni = newCni();
    await cni.load();
    expect(cni.status()).toMatchObject({ ready: true });
    expect(cni.networks()).toEqual([
      expect.objectContaining({ name: NET, cniVersion: '1.0.0', plugins: ['bridge', 'portmap'] }),
    ]);
    const [att, ...more] = await cni.setup(id, ns, {
      args: {
        IgnoreUnknown: '1',
        K8S_POD_NAMESPACE: 'default',
        K8S_POD_NAME: 'a',
        K8S_POD_INFRA_CONTAINER_ID: id,
      },
      portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp' }],
    });
    expect(more).toEqual([]);
    expect(att!.network).toBe(NET);
    expect(att!.ifName).toBe('eth0');
    expect(att!.ips).toHaveLength(1);
    const ip = att!.ips[0]!;
    expect(ip.version).toBe('4');
    expect(ip.address).toMatch(new RegExp(`^${subnet.replace(/\./g, '\\.')}\\.\\d+/24$`));
    expect(ip.gateway).toBe(`${subnet}.1`);
    const podIP = ip.address.split('/')[0]!;
    const eth0 = att!.interfaces.find((i) => i.sandbox === ns);
    expect(eth0?.name).toBe('eth0');
    const veth = att!.interfaces.find((i) => i.name !== BRIDGE && !i.sandbox)!.name;
    expect(await linkExists(veth)).toBe(true);
    // inside the namespace, eth0 has the address the result reported
    expect(await sh('nsenter', `--net=${ns}`, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0')).toContain(
      ip.address,
    );
    // host-local's lease file
    expect(existsSync(join(ipamDir, NET, podIP))).toBe(true);
    // portmap's DNAT rule
    expect(await natRules()).toContain(`--dport ${hostPort} -j DNAT --to-destination ${podIP}:8080`);

    await serve(ns, 8080, `hello from ${id}\n`);
    expect(await httpGetRetry(`http://${podIP}:8080/`)).toBe(`hello from ${id}\n`);
    // through the hostPort, on the host's side of the bridge (127.0.0.1 would need route_localnet)
    expect(await httpGetRetry(`http://${subnet}.1:${hostPort}/`)).toBe(`hello from ${id}\n`);

    await cni.check(id, ns);
    expect(existsSync(cacheFile(cacheDir, NET, id, 'eth0'))).toBe(true);

    await cni.remove(id, ns);
    expect(await linkExists(veth)).toBe(false);
    expect(existsSync(join(ipamDir, NET, podIP))).toBe(false);
    expect(await natRules()).not.toContain(`--dport ${hostPort} `);
    expect(existsSync(cacheFile(cacheDir, NET, id, 'eth0'))).toBe(false);
    expect(await sh('nsenter', `--net=${ns}`, 'ip', '-o', 'link')).not.toContain('eth0');
    await cni.remove(id, ns);
    await removeNetns(ns);
    await cni.remove(id, ns);
  });

  test('remove after a restart, with the conf dir emptied and the netns gone, uses the cache', async () => {
    const id = `cniint-b-${process.pid}`;
    ids.push(id);
    const ns = await newNetns('pod-b');
    const hostPort = await freePort();
    const first = newCni();
    await first.load();
    const [att] = await first.setup(id, ns, {
      portMappings: [{ hostPort, containerPort: 80, protocol: 'tcp' }],
    });
    const podIP = att!.ips[0]!.address.split('/')[0]!;
    expect(await natRules()).toContain(`--to-destination ${podIP}:80`);
    const saved = await readFile(join(confDir, '10-berth.conflist'));
    await rm(join(confDir, '10-berth.conflist'));
    try {
      await removeNetns(ns);
      const restarted = newCni();
      await restarted.load();
      expect(restarted.status().ready).toBe(false);
      await restarted.remove(id, ns);
      expect(existsSync(join(ipamDir, NET, podIP))).toBe(false);
      expect(await natRules()).not.toContain(`--to-destination ${podIP}:80`);
      expect(await readdir(join(cacheDir, 'results'))).not.toContain(`${NET}-${id}-eth0`);
      await restarted.remove(id, ns);
    } finally {
      await writeFile(join(confDir, '10-berth.conflist'), saved);
    }
  });

  test('a missing plugin binary fails setup naming it, and what bridge added is undone', async () => {
    const id = `cniint-c-${process.pid}`;
    ids.push(id);
    const ns = await newNetns('pod-c');
    const dir = join(root, 'net.d-missing');
    await mkdir(dir);
    await writeFile(join(dir, '10.conflist'), JSON.stringify(conflist([{ type: 'berth-no-such-plugin' }])));
    const cni = new Cni({ binDirs: [BIN], confDir: dir, cacheDir });
    await cni.load();
    await expect(cni.setup(id, ns)).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: `network "${NET}": failed to find plugin "berth-no-such-plugin" in path [${BIN}]`,
    });
    const leases = (await readdir(join(ipamDir, NET))).filter((f) => f.startsWith(`${subnet}.`));
    for (const f of leases)
      expect((await readFile(join(ipamDir, NET, f), 'utf8')).split('\n')[0]).not.toBe(id);
    expect(await sh('nsenter', `--net=${ns}`, 'ip', '-o', 'link')).not.toContain('eth0');
    expect(existsSync(cacheFile(cacheDir, NET, id, 'eth0'))).toBe(false);
  });

  test("a plugin's own error comes back typed, with its message and the network named", async () => {
    const id = `cniint-d-${process.pid}`;
    ids.push(id);
    const ns = await newNetns('pod-d');
    const dir = join(root, 'net.d-bad');
    await mkdir(dir);
    const bad = conflist();
    (bad.plugins[0] as any).ipam.ranges = [[{ subnet: 'not-a-subnet' }]];
    await writeFile(join(dir, '10.conflist'), JSON.stringify(bad));
    const cni = new Cni({ binDirs: [BIN], confDir: dir, cacheDir });
    await cni.load();
    const err = await cni.setup(id, ns).catch((e) => e);
    expect(err).toMatchObject({ code: 'ERR_UNKNOWN', network: NET, plugin: 'bridge', command: 'ADD' });
    expect(err.message).toContain(`plugin type="bridge" name="${NET}" failed (add):`);
    expect(err.message).toContain('not-a-subnet');
  });
});
