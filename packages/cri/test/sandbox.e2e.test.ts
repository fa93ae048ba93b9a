/**
 * Pod sandboxes end to end: berthd (the CRI e2e fixture) with a CNI conf dir (a bridge of its
 * own, host-local on a free /24, portmap) and a pause image (static busybox sleep) from a
 * loopback registry, driven by crictl. Everything made here (bridge, DNAT chains, netns pins,
 * shm mounts, the cgroup parent) is removed in afterAll.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@berth/client';
import { type CriDaemon, httpGetRetry, startCriDaemon } from '@berth/testkit';

const run = promisify(execFile);

let cri: CriDaemon;
let subnet: string; // "10.9x.N"
const servers: ChildProcess[] = [];

const crictl = (...args: string[]) => cri.crictl(...args);
const ok = (...args: string[]) => cri.ok(...args);

/** One RuntimeService call straight over gRPC, for what crictl checks before calling (e.g. rmp looks the pod up first). */
async function call(method: string, request: object): Promise<unknown> {
  const client = new Client(cri.berthd.address);
  try {
    const stub = client.stubFor('runtime.v1.RuntimeService') as unknown as Record<
      string,
      (req: object, cb: (err: Error | null, res: unknown) => void) => void
    >;
    return await new Promise((resolve, reject) =>
      stub[method]!.call(stub, request, (err, res) => (err ? reject(err) : resolve(res))),
    );
  } finally {
    client.close();
  }
}

let podSeq = 0;
async function podConfig(over: Record<string, unknown> = {}): Promise<string> {
  const n = ++podSeq;
  return cri.writeJson(`pod${n}`, {
    metadata: { name: `pod${n}`, namespace: 'e2e', uid: `uid-${n}`, attempt: 0 },
    hostname: `pod${n}-host`,
    log_directory: cri.logDir(`pod${n}`),
    labels: { app: 'sandbox-e2e', n: String(n) },
    annotations: { 'e2e.berth/n': String(n) },
    linux: {},
    ...over,
  });
}

interface Inspect {
  status: {
    id: string;
    state: string;
    network: { ip: string };
    linux: { namespaces: { options: { network: string; pid: string; ipc: string } } };
    labels: Record<string, string>;
  };
  info: {
    pid: number;
    processStatus: string;
    netns: string;
    runtimeSpec: { linux: { namespaces: { type: string; path?: string }[] } };
    runtimeHandler: string;
    config: Record<string, unknown>;
    cniResult: { Interfaces: Record<string, { IPConfigs: { IP: string; Gateway: string }[] | null }> } | null;
  };
}

/** crictl inspectp; `info.netns` is the network namespace the pause container joined ('' for the host's). */
async function inspect(id: string): Promise<Inspect> {
  const out = JSON.parse(await ok('inspectp', id)) as Inspect;
  out.info.netns = out.info.runtimeSpec?.linux.namespaces.find((n) => n.type === 'network')?.path ?? '';
  return out;
}
const natRules = async () => (await run('iptables', ['-w', '-t', 'nat', '-S'])).stdout;
const vethsOnBridge = () => cri.net!.veths();
const leases = () => cri.net!.leases();
const until = (what: string, fn: () => Promise<boolean>) => cri.until(what, fn);

beforeAll(async () => {
  cri = await startCriDaemon({
    name: 'sbx',
    network: { portmap: true },
    // a second handler: containerd's runc shim, its state under a runc root of the test's own
    handler: { name: 'runc', options: (dir) => ({ Root: join(dir, 'runc') }) },
  });
  subnet = cri.net!.subnet;
}, 120_000);

afterAll(async () => {
  for (const s of servers) s.kill('SIGKILL');
  // whatever a failed test left: pods, shm mounts and netns pins, the bridge, DNAT chains, the cgroup parent
  await cri?.stop();
}, 120_000);

describe('pod sandboxes through crictl', () => {
  test('Status reports NetworkReady from the CNI conf dir, read again as it changes', async () => {
    const networkReady = async () =>
      JSON.parse(await ok('info')).status.conditions.find((c: { type: string }) => c.type === 'NetworkReady');
    expect((await networkReady()).status).toBe(true);
    const conf = cri.net!.conflist;
    await rename(conf, `${conf}.off`);
    try {
      expect(await networkReady()).toMatchObject({
        status: false,
        reason: 'NetworkPluginNotReady',
        message: 'Network plugin returns error: cni plugin not initialized',
      });
      const failed = await crictl('runp', await podConfig());
      expect(failed.stderr).toMatch(
        /code = Unknown desc = failed to setup network for sandbox .*cni plugin not initialized/,
      );
    } finally {
      await rename(`${conf}.off`, conf);
    }
    expect((await networkReady()).status).toBe(true);
  });

  test('runp: a READY pod with an IP on the bridge, its own netns, shm and hostPort; stopp/rmp leave nothing', async () => {
    const hostPort = 20000 + (process.pid % 20000);
    const id = await ok(
      'runp',
      await podConfig({
        port_mappings: [{ protocol: 0, container_port: 80, host_port: hostPort }],
        dns_config: { servers: ['10.0.0.10'], searches: ['e2e.svc'], options: ['ndots:5'] },
        linux: { sysctls: { 'net.ipv4.ip_forward': '1' } },
      }),
    );
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    // the pause container's record and snapshot in k8s.io; the lease that held the snapshot meanwhile is gone
    const ctrArgs = ['--address', cri.berthd.address, '-n', 'k8s.io'];
    expect((await run('ctr', [...ctrArgs, 'containers', 'ls', '-q'])).stdout.split('\n')).toContain(id);
    expect((await run('ctr', [...ctrArgs, 'snapshots', 'ls'])).stdout).toMatch(new RegExp(`^${id}\\s`, 'm'));
    expect((await run('ctr', [...ctrArgs, 'leases', 'ls', '-q'])).stdout.trim()).toBe('');
    const labels = JSON.parse((await run('ctr', [...ctrArgs, 'containers', 'info', id])).stdout).Labels;
    expect(labels).toMatchObject({ 'io.cri-containerd.kind': 'sandbox', app: 'sandbox-e2e' });

    const pods = JSON.parse(await ok('pods', '-o', 'json')).items;
    expect(pods.map((p: { id: string }) => p.id)).toContain(id);
    const st = await inspect(id);
    expect(st.status.state).toBe('SANDBOX_READY');
    expect(st.status.network.ip.startsWith(`${subnet}.`)).toBe(true);
    expect(st.status.linux.namespaces.options).toMatchObject({ network: 'POD', pid: 'POD', ipc: 'POD' });
    // the default handler (berth) is reported as the request named it: '', as containerd does
    expect(st.info.runtimeHandler).toBe('');
    const ip = st.status.network.ip;
    // verbose info as containerd's: the config in Go's JSON, go-cni's result
    expect(st.info.config).toMatchObject({
      metadata: { name: `pod${podSeq}`, namespace: 'e2e', uid: `uid-${podSeq}` },
      hostname: `pod${podSeq}-host`,
      port_mappings: [{ container_port: 80, host_port: hostPort }],
      linux: { sysctls: { 'net.ipv4.ip_forward': '1' } },
    });
    expect(st.info.cniResult?.Interfaces.eth0?.IPConfigs).toEqual([{ IP: ip, Gateway: `${subnet}.1` }]);
    expect(st.info.cniResult?.Interfaces.lo?.IPConfigs?.[0]?.IP).toBe('127.0.0.1');

    // the pause process lives in the pinned netns, which is under the state dir
    const netns = st.info.netns;
    expect(netns.startsWith(join(cri.berthd.state, 'io.containerd.grpc.v1.cri', 'netns'))).toBe(true);
    expect((await stat(`/proc/${st.info.pid}/ns/net`)).ino).toBe((await stat(netns)).ino);
    const own = Number((await readFile(`/proc/${cri.berthd.pid}/oom_score_adj`, 'utf8')).trim());
    expect(Number((await readFile(`/proc/${st.info.pid}/oom_score_adj`, 'utf8')).trim())).toBe(
      Math.max(-998, own),
    );
    const spec = st.info.runtimeSpec as {
      hostname: string;
      annotations: Record<string, string>;
      linux: { sysctl: Record<string, string>; namespaces: { type: string; path?: string }[] };
      root: { readonly: boolean };
      mounts: { destination: string; source: string; options: string[] }[];
    };
    expect(spec.hostname).toBe(`pod${podSeq}-host`);
    expect(spec.root.readonly).toBe(true);
    expect(spec.linux.sysctl).toEqual({ 'net.ipv4.ip_forward': '1' });
    expect(spec.annotations['io.kubernetes.cri.container-type']).toBe('sandbox');
    expect(spec.annotations['io.kubernetes.cri.sandbox-id']).toBe(id);
    expect(spec.linux.namespaces).toContainEqual({ type: 'network', path: netns });

    // files for the pod's containers, and its /dev/shm
    const criRoot = join(cri.berthd.root, 'io.containerd.grpc.v1.cri', 'sandboxes', id);
    expect(await readFile(join(criRoot, 'resolv.conf'), 'utf8')).toBe(
      'search e2e.svc\nnameserver 10.0.0.10\noptions ndots:5\n',
    );
    expect(await readFile(join(criRoot, 'hostname'), 'utf8')).toBe(`pod${podSeq}-host\n`);
    const shm = join(cri.berthd.state, 'io.containerd.grpc.v1.cri', 'sandboxes', id, 'shm');
    expect(cri.mounts()).toContain(shm);
    expect(spec.mounts).toContainEqual({
      destination: '/dev/shm',
      type: 'bind',
      source: shm,
      options: ['rbind', 'ro'],
    });
    expect(spec.mounts).toContainEqual({
      destination: '/etc/resolv.conf',
      type: 'bind',
      source: join(criRoot, 'resolv.conf'),
      options: ['rbind', 'ro'],
    });

    // reachable from the host, and through the hostPort on the bridge's gateway
    await run('/bin/busybox', ['ping', '-c', '1', '-W', '5', ip]);
    const www = join(cri.dir, 'www');
    await mkdir(www, { recursive: true });
    await writeFile(join(www, 'index.html'), 'hello from the pod');
    servers.push(
      spawn('nsenter', [`--net=${netns}`, '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', www], {
        stdio: 'ignore',
      }),
    );
    expect(await httpGetRetry(`http://${ip}/`)).toBe('hello from the pod');
    expect(await httpGetRetry(`http://${subnet}.1:${hostPort}/`)).toBe('hello from the pod');
    expect(await natRules()).toContain(`--dport ${hostPort}`);
    expect(await leases()).toContain(ip);
    expect(await vethsOnBridge()).not.toEqual([]);
    servers.pop()?.kill('SIGKILL');

    await ok('stopp', id);
    const stopped = await inspect(id);
    expect(stopped.status.state).toBe('SANDBOX_NOTREADY');
    expect(stopped.status.network.ip).toBe('');
    expect(stopped.info.pid).toBe(0);
    expect(stopped.info.processStatus).toBe('deleted');
    expect(existsSync(netns)).toBe(false);
    expect(await vethsOnBridge()).toEqual([]);
    expect(await leases()).not.toContain(ip);
    expect(await natRules()).not.toContain(`--dport ${hostPort}`);
    expect(cri.mounts()).not.toContain(shm);
    await ok('stopp', id); // a second stop is fine

    await ok('rmp', id);
    expect(JSON.parse(await ok('pods', '-o', 'json')).items).toEqual([]);
    expect(existsSync(criRoot)).toBe(false);
    const ctr = await run('ctr', ['--address', cri.berthd.address, '-n', 'k8s.io', 'containers', 'ls', '-q']);
    expect(ctr.stdout).not.toContain(id);
    // removing a pod that is gone is no error, as containerd answers; stopping one is NotFound
    await expect(call('RemovePodSandbox', { podSandboxId: id })).resolves.toEqual({});
    await expect(call('StopPodSandbox', { podSandboxId: id })).rejects.toThrow(/not found/);
  }, 120_000);

  test('error paths: unknown id NotFound, a name in use AlreadyExists naming the holder, bad metadata, unknown handler', async () => {
    const unknown = await crictl('inspectp', 'f00dfeed');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/code = NotFound desc = .*f00dfeed/);
    const stopUnknown = await crictl('stopp', 'f00dfeed');
    expect(stopUnknown.stderr).toMatch(/code = NotFound/);

    const cfg = await podConfig();
    const id = await ok('runp', cfg);
    const again = await crictl('runp', cfg);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(
      /code = AlreadyExists desc = failed to reserve sandbox name \\?"pod\d+_e2e_uid-\d+_0\\?": .*reserved for \\?"[0-9a-f]{64}/,
    );
    expect(again.stderr).toContain(id);

    const noUid = join(cri.dir, 'nouid.json');
    await writeFile(noUid, JSON.stringify({ metadata: { name: 'nouid', namespace: 'e2e' } }));
    const bad = await crictl('runp', noUid);
    expect(bad.stderr).toMatch(/code = InvalidArgument desc = .*uid/);

    const handler = await crictl('runp', '--runtime', 'nosuch', await podConfig());
    expect(handler.code).not.toBe(0);
    expect(handler.stderr).toMatch(
      /code = Unknown desc = failed to get sandbox runtime: no runtime for \\?"nosuch\\?" is configured/,
    );
    // the failed runs left no pod and no name behind
    const items = JSON.parse(await ok('pods', '-o', 'json')).items;
    expect(items.map((p: { id: string }) => p.id)).toEqual([id]);

    // filters: by state, label, id prefix
    expect(JSON.parse(await ok('pods', '-o', 'json', '--label', `n=${podSeq - 1}`)).items).toHaveLength(1);
    expect(JSON.parse(await ok('pods', '-o', 'json', '--label', 'n=nosuch')).items).toHaveLength(0);
    expect(JSON.parse(await ok('pods', '-o', 'json', '--id', id.slice(0, 12))).items).toHaveLength(1);
    expect(JSON.parse(await ok('pods', '-o', 'json', '--state', 'notready')).items).toHaveLength(0);

    // the pause process dying makes the pod NOTREADY
    const { info } = await inspect(id);
    process.kill(info.pid, 'SIGKILL');
    await until('NOTREADY', async () => (await inspect(id)).status.state === 'SANDBOX_NOTREADY');
    expect(JSON.parse(await ok('pods', '-o', 'json', '--state', 'notready')).items).toHaveLength(1);
    await ok('rmp', id);
  }, 120_000);

  test("runtime handler runc: containerd-shim-runc-v2 with the handler's options (runc root)", async () => {
    const id = await ok(
      'runp',
      '--runtime',
      'runc',
      await podConfig({ linux: { cgroup_parent: cri.cgroupParent } }),
    );
    const st = await inspect(id);
    expect(st.status.state).toBe('SANDBOX_READY');
    expect(st.info.runtimeHandler).toBe('runc');
    expect(st.status.network.ip.startsWith(`${subnet}.`)).toBe(true);
    // runc keeps its state under the configured Root, per namespace
    expect(existsSync(join(cri.dir, 'runc', 'k8s.io', id))).toBe(true);
    const spec = st.info.runtimeSpec as { linux: { cgroupsPath: string } };
    expect(spec.linux.cgroupsPath).toBe(`${cri.cgroupParent}/${id}`);
    const cgroup = await readFile(`/proc/${st.info.pid}/cgroup`, 'utf8');
    expect(cgroup).toContain(`${cri.cgroupParent}/${id}`);
    await ok('stopp', id);
    await ok('rmp', id);
    expect(existsSync(join(cri.dir, 'runc', 'k8s.io', id))).toBe(false);
  }, 60_000);

  test('a run that fails at task create undoes every earlier step (network, netns, shm, record, snapshot, name)', async () => {
    const podsBefore = JSON.parse(await ok('pods', '-o', 'json')).items.length;
    const netnsDir = join(cri.berthd.state, 'io.containerd.grpc.v1.cri', 'netns');
    const pinsBefore = await readdir(netnsDir).catch(() => [] as string[]);
    // runc refuses a sysctl the kernel does not have: the pause task cannot be created
    const cfg = await podConfig({ linux: { sysctls: { 'net.ipv4.berth_no_such_sysctl': '1' } } });
    const failed = await crictl('runp', cfg);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(/berth_no_such_sysctl/);
    expect(JSON.parse(await ok('pods', '-o', 'json')).items).toHaveLength(podsBefore);
    expect(await readdir(netnsDir)).toEqual(pinsBefore);
    expect(await vethsOnBridge()).toEqual([]);
    expect(await leases()).toEqual([]);
    expect(
      cri.mounts().filter((m) => /io\.containerd\.grpc\.v1\.cri\/sandboxes\/[0-9a-f]{64}\/shm$/.test(m)),
    ).toEqual([]);
    const ctr = await run('ctr', ['--address', cri.berthd.address, '-n', 'k8s.io', 'containers', 'ls', '-q']);
    expect(ctr.stdout.trim()).toBe('');
    const snaps = await run('ctr', ['--address', cri.berthd.address, '-n', 'k8s.io', 'snapshots', 'ls']);
    expect(snaps.stdout).not.toMatch(/^[0-9a-f]{64}\s/m);
    const sandboxes = await readdir(join(cri.berthd.root, 'io.containerd.grpc.v1.cri', 'sandboxes')).catch(
      () => [],
    );
    expect(sandboxes).toEqual([]);
    // the name is free again
    const fixed = JSON.parse(await readFile(cfg, 'utf8'));
    fixed.linux = {};
    await writeFile(cfg, JSON.stringify(fixed));
    const id = await ok('runp', cfg);
    await ok('rmp', '--force', id);
  }, 60_000);

  test('a host-network pod has no netns and reports no IP', async () => {
    const id = await ok(
      'runp',
      await podConfig({ linux: { security_context: { namespace_options: { network: 2, ipc: 2 } } } }),
    );
    const st = await inspect(id);
    expect(st.status.network.ip).toBe('');
    expect(st.status.linux.namespaces.options.network).toBe('NODE');
    expect((await stat(`/proc/${st.info.pid}/ns/net`)).ino).toBe((await stat('/proc/self/ns/net')).ino);
    await ok('rmp', '--force', id);
  }, 60_000);

  test('after SIGKILL and a restart the pod is listed as before, and stop tears its network down', async () => {
    const cfg = await podConfig();
    const id = await ok('runp', cfg);
    const other = await ok('runp', await podConfig());
    const before = await inspect(id);
    expect(await vethsOnBridge()).not.toEqual([]);
    await cri.berthd.stop('SIGKILL');
    await cri.restart();
    // the restarted daemon watches the pause processes again
    process.kill((await inspect(other)).info.pid, 'SIGKILL');
    await until(
      'NOTREADY after restart',
      async () => (await inspect(other)).status.state === 'SANDBOX_NOTREADY',
    );
    await ok('rmp', other);
    const after = await inspect(id);
    expect(after.status.state).toBe('SANDBOX_READY');
    expect(after.status.network.ip).toBe(before.status.network.ip);
    expect(after.info.pid).toBe(before.info.pid);
    expect(JSON.parse(await ok('pods', '-o', 'json')).items.map((p: { id: string }) => p.id)).toContain(id);
    // the name stays reserved
    const dup = await crictl('runp', cfg);
    expect(dup.stderr).toMatch(/AlreadyExists/);

    await ok('stopp', id);
    expect(await vethsOnBridge()).toEqual([]);
    expect(await leases()).not.toContain(before.status.network.ip);
    expect(existsSync(before.info.netns)).toBe(false);
    expect(existsSync(`/proc/${before.info.pid}`)).toBe(false);
    await ok('rmp', id);
    expect(JSON.parse(await ok('pods', '-o', 'json')).items.map((p: { id: string }) => p.id)).not.toContain(
      id,
    );
  }, 180_000);
});
