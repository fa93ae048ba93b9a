import type { wire } from '@berth/api';
import { decodeRuncOptions } from '@berth/shim';
import type { RuntimeHandler } from '../src/config';
import { resolvConfFromDns } from '../src/sandbox/files';
import { goCniResult, goJson } from '../src/sandbox/info';
import { runtimeOptions } from '../src/sandbox/runtime-options';
import { podIps } from '../src/sandbox/service';
import { cgroupsPath, sandboxSpec } from '../src/sandbox/spec';

const handler = (options: Record<string, unknown>): RuntimeHandler => ({
  name: 'runc',
  type: 'io.containerd.runc.v2',
  path: '',
  podAnnotations: [],
  options,
});

function podConfig(over: Partial<wire.cri.PodSandboxConfig> = {}): wire.cri.PodSandboxConfig {
  return {
    metadata: { name: 'web', namespace: 'default', uid: 'u1', attempt: 0 },
    hostname: 'web-0',
    logDirectory: '/var/log/pods/web',
    dnsConfig: undefined,
    portMappings: [],
    labels: { app: 'web' },
    annotations: {},
    linux: undefined,
    windows: undefined,
    ...over,
  };
}

describe('runtime options', () => {
  test('a handler without options gives none, as containerd leaves them empty', () => {
    expect(runtimeOptions(handler({}))).toBeUndefined();
  });

  test("config.toml's Go field names become containerd.runc.v1.Options the shims decode", () => {
    const any = runtimeOptions(
      handler({ SystemdCgroup: true, Root: '/run/x', BinaryName: 'crun', Unknown: 1 }),
    )!;
    expect(any.typeUrl).toBe('containerd.runc.v1.Options');
    const opts = decodeRuncOptions(any);
    expect(opts).toMatchObject({ systemdCgroup: true, root: '/run/x', binaryName: 'crun' });
  });

  test('a value of the wrong type is InvalidArgument naming the message', () => {
    expect(() => runtimeOptions(handler({ SystemdCgroup: 'yes' }))).toThrow(/containerd.runc.v1.Options/);
  });
});

describe('pod network and files', () => {
  test('pod IPs: IPv4 first, masks dropped, only the default network', () => {
    const ips = podIps([
      {
        network: 'n',
        ifName: 'eth0',
        ips: [
          { version: '6', address: 'fd00::5/64' },
          { version: '4', address: '10.1.0.5/24', gateway: '10.1.0.1' },
        ],
        interfaces: [],
        raw: {},
      },
      {
        network: 'other',
        ifName: 'eth1',
        ips: [{ version: '4', address: '10.2.0.5/24' }],
        interfaces: [],
        raw: {},
      },
    ]);
    expect(ips).toEqual(['10.1.0.5', 'fd00::5']);
    expect(podIps([])).toEqual([]);
  });

  test("go-cni's result: interfaces by name, each with the IPs pointing at it", () => {
    const r = goCniResult([
      {
        network: 'n',
        ifName: 'eth0',
        ips: [{ version: '4', address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 2 }],
        interfaces: [
          { name: 'cni0', mac: 'aa' },
          { name: 'veth1', mac: 'bb' },
          { name: 'eth0', mac: 'cc', sandbox: '/ns' },
        ],
        routes: [{ dst: '0.0.0.0/0' }],
        raw: {},
      },
    ]);
    expect(r).toEqual({
      Interfaces: {
        cni0: { IPConfigs: null, Mac: 'aa', Sandbox: '' },
        veth1: { IPConfigs: null, Mac: 'bb', Sandbox: '' },
        eth0: { IPConfigs: [{ IP: '10.1.0.5', Gateway: '10.1.0.1' }], Mac: 'cc', Sandbox: '/ns' },
      },
      DNS: [{}],
      Routes: [{ dst: '0.0.0.0/0' }],
    });
  });

  test('resolv.conf from a DNSConfig, as containerd writes it', () => {
    expect(
      resolvConfFromDns({
        servers: ['10.0.0.10', '10.0.0.11'],
        searches: ['a.svc', 'svc'],
        options: ['ndots:5'],
      }),
    ).toBe('search a.svc svc\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n');
    expect(resolvConfFromDns({ servers: ['1.1.1.1'], searches: [], options: [] })).toBe(
      'nameserver 1.1.1.1\n',
    );
  });

  test("the config in Go's JSON: snake_case, omitempty, enums as numbers, user map keys kept", () => {
    const cfg = podConfig({
      portMappings: [
        { protocol: 'TCP', containerPort: 80, hostPort: 8080, hostIp: '' },
        { protocol: 'UDP', containerPort: 53, hostPort: 0, hostIp: '' },
      ],
      labels: { 'app.kubernetes.io/name': 'web', camelCase: 'x' },
    });
    expect(goJson(cfg)).toEqual({
      metadata: { name: 'web', namespace: 'default', uid: 'u1' },
      hostname: 'web-0',
      log_directory: '/var/log/pods/web',
      port_mappings: [
        { container_port: 80, host_port: 8080 },
        { protocol: 1, container_port: 53 },
      ],
      labels: { 'app.kubernetes.io/name': 'web', camelCase: 'x' },
    });
  });
});

describe('the pause container spec', () => {
  const base = {
    id: 'abc',
    namespace: 'k8s.io',
    image: { name: 'registry.k8s.io/pause:3.6', config: { Entrypoint: ['/pause'] } },
    netnsPath: '/run/netns/cni-1',
    shmPath: '/state/sandboxes/abc/shm',
    resolvConfPath: '/root/sandboxes/abc/resolv.conf',
    systemdCgroup: false,
    restrictOomScoreAdj: false,
    disableCgroup: false,
  };

  test('cgroups paths: cgroupfs joins, systemd names a slice', () => {
    expect(cgroupsPath('/kubepods/burstable/pod1', 'abc', false)).toBe('/kubepods/burstable/pod1/abc');
    expect(cgroupsPath('/kubepods.slice/kubepods-pod1.slice', 'abc', true)).toBe(
      'kubepods-pod1.slice:cri-containerd:abc',
    );
  });

  test('pod network namespace, hostname, sysctls, cgroup, oom score, binds, annotations', async () => {
    const spec = await sandboxSpec({
      ...base,
      config: podConfig({
        linux: {
          cgroupParent: '/kubepods/pod1',
          securityContext: undefined,
          sysctls: { 'net.core.somaxconn': '1024' },
          overhead: undefined,
          resources: undefined,
        },
      }),
    });
    expect(spec.process?.args).toEqual(['/pause']);
    expect(spec.process?.oomScoreAdj).toBe(-998);
    expect(spec.process?.rlimits).toBeUndefined();
    expect(spec.root).toEqual({ path: 'rootfs', readonly: true });
    expect(spec.hostname).toBe('web-0');
    expect(spec.linux?.cgroupsPath).toBe('/kubepods/pod1/abc');
    expect(spec.linux?.sysctl).toEqual({ 'net.core.somaxconn': '1024' });
    expect(spec.linux?.resources?.cpu?.shares).toBe(2);
    expect(spec.linux?.namespaces).toEqual([
      { type: 'pid' },
      { type: 'ipc' },
      { type: 'uts' },
      { type: 'mount' },
      { type: 'network', path: '/run/netns/cni-1' },
    ]);
    expect(spec.mounts?.map((m) => m.destination)).not.toContain('/run');
    expect(spec.mounts?.slice(-2)).toEqual([
      { destination: '/dev/shm', type: 'bind', source: base.shmPath, options: ['rbind', 'ro'] },
      {
        destination: '/etc/resolv.conf',
        type: 'bind',
        source: base.resolvConfPath,
        options: ['rbind', 'ro'],
      },
    ]);
    expect(spec.annotations).toEqual({
      'io.kubernetes.cri.container-type': 'sandbox',
      'io.kubernetes.cri.sandbox-id': 'abc',
      'io.kubernetes.cri.sandbox-namespace': 'default',
      'io.kubernetes.cri.sandbox-uid': 'u1',
      'io.kubernetes.cri.sandbox-name': 'web',
      'io.kubernetes.cri.sandbox-log-directory': '/var/log/pods/web',
    });
  });

  test("host network, PID and IPC: the host's namespaces, no hostname, the host's /dev/shm", async () => {
    const spec = await sandboxSpec({
      ...base,
      netnsPath: '',
      shmPath: '',
      config: podConfig({
        linux: {
          cgroupParent: '',
          securityContext: {
            namespaceOptions: {
              network: 'NODE',
              pid: 'NODE',
              ipc: 'NODE',
              targetId: '',
              usernsOptions: undefined,
            },
            selinuxOptions: undefined,
            runAsUser: { value: 65535 },
            readonlyRootfs: false,
            supplementalGroups: [5],
            privileged: false,
            seccompProfilePath: '',
            runAsGroup: { value: 65534 },
            seccomp: undefined,
            apparmor: undefined,
          },
          sysctls: {},
          overhead: undefined,
          resources: undefined,
        },
      }),
    });
    expect(spec.linux?.namespaces).toEqual([{ type: 'mount' }]);
    expect(spec.hostname).toBeUndefined();
    expect(spec.linux?.cgroupsPath).toBe('/k8s.io/abc');
    expect(spec.process?.user).toEqual({ uid: 65535, gid: 65534, additionalGids: [5] });
    expect(spec.mounts?.find((m) => m.type === 'bind' && m.destination === '/dev/shm')?.source).toBe(
      '/dev/shm',
    );
  });

  test('an image with no command is InvalidArgument naming it', async () => {
    await expect(
      sandboxSpec({ ...base, image: { name: 'empty:1', config: {} }, config: podConfig() }),
    ).rejects.toThrow('no command specified by sandbox image "empty:1"');
  });

  test("restrict_oom_score_adj: never below the daemon's own score", async () => {
    const { readFileSync } = await import('node:fs');
    const own = Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim());
    const spec = await sandboxSpec({ ...base, restrictOomScoreAdj: true, config: podConfig() });
    expect(spec.process?.oomScoreAdj).toBe(Math.max(-998, own));
  });
});
