import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CriLineSplitter, criLogLine, type wire } from '@berth/api';
import { parseSignal } from '../src/container/service';
import {
  type ContainerSpecInput,
  cgroupsPath,
  containerSpec,
  imageVolumeMounts,
  linuxResources,
  processArgs,
  sandboxMounts,
  userString,
} from '../src/container/spec';

function config(over: Partial<wire.cri.ContainerConfig> = {}): wire.cri.ContainerConfig {
  return {
    metadata: { name: 'c', attempt: 0 },
    image: { image: 'img', annotations: {} } as wire.cri.ImageSpec,
    command: [],
    args: [],
    workingDir: '',
    envs: [],
    mounts: [],
    devices: [],
    labels: {},
    annotations: {},
    logPath: '',
    stdin: false,
    stdinOnce: false,
    tty: false,
    linux: undefined,
    windows: undefined,
    ...over,
  } as wire.cri.ContainerConfig;
}

const sandboxConfig = {
  metadata: { name: 'p', namespace: 'ns', uid: 'u', attempt: 0 },
  hostname: 'pod-host',
  logDirectory: '',
  dnsConfig: undefined,
  portMappings: [],
  labels: {},
  annotations: {},
  linux: undefined,
  windows: undefined,
} as unknown as wire.cri.PodSandboxConfig;

type Sc = Partial<wire.cri.LinuxContainerSecurityContext>;
const linux = (securityContext: Sc, resources?: Partial<wire.cri.LinuxContainerResources>) =>
  ({ securityContext, resources }) as wire.cri.LinuxContainerConfig;

let rootfs: string;
beforeAll(async () => {
  rootfs = await mkdtemp(join(tmpdir(), 'cri-spec-'));
  await mkdir(join(rootfs, 'etc'));
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/tmp:/bin/sh\n');
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\napp:x:1234:\nextra:x:2000:app\nwheel:x:10:root\n');
});
afterAll(() => rm(rootfs, { recursive: true, force: true }));

function input(c: wire.cri.ContainerConfig, over: Partial<ContainerSpecInput> = {}): ContainerSpecInput {
  return {
    id: 'cid',
    sandboxId: 'sid',
    sandboxPid: 42,
    config: c,
    sandboxConfig,
    image: { Entrypoint: ['/entry'], Cmd: ['cmd'], Env: ['A=image', 'PATH=/img'], WorkingDir: '/w' },
    imageName: 'docker.io/library/img:latest',
    extraMounts: [],
    restrictOomScoreAdj: false,
    disableCgroup: false,
    rootfs,
    nodeHostname: 'node',
    mountinfo: '',
    swapAvailable: false,
    ...over,
  };
}

describe('processArgs (the kubelet rules)', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['a', 'b'] };
  test('neither: Entrypoint + Cmd', () => {
    expect(processArgs({ command: [], args: [] }, image)).toEqual(['/entry', 'a', 'b']);
  });
  test('command replaces Entrypoint and drops Cmd', () => {
    expect(processArgs({ command: ['/c'], args: [] }, image)).toEqual(['/c']);
  });
  test('args alone replace Cmd', () => {
    expect(processArgs({ command: [], args: ['x'] }, image)).toEqual(['/entry', 'x']);
  });
  test('command and args', () => {
    expect(processArgs({ command: ['/c'], args: ['x'] }, image)).toEqual(['/c', 'x']);
  });
  test('nothing at all is InvalidArgument', () => {
    expect(() => processArgs({ command: [], args: [] }, {})).toThrow(/no command specified/);
  });
});

describe('userString', () => {
  test('uid, name (wins over uid), group', () => {
    expect(userString({ runAsUser: { value: 5 } } as Sc as wire.cri.LinuxContainerSecurityContext)).toBe('5');
    expect(
      userString({
        runAsUser: { value: 5 },
        runAsUsername: 'app',
      } as Sc as wire.cri.LinuxContainerSecurityContext),
    ).toBe('app');
    expect(
      userString({
        runAsUser: { value: 5 },
        runAsGroup: { value: 7 },
      } as Sc as wire.cri.LinuxContainerSecurityContext),
    ).toBe('5:7');
    expect(userString(undefined)).toBe('');
  });
  test('a group without a user is refused, naming it', () => {
    expect(() =>
      userString({ runAsGroup: { value: 7 } } as Sc as wire.cri.LinuxContainerSecurityContext),
    ).toThrow(/user group "7" is specified without user/);
  });
});

describe('containerSpec', () => {
  test('image defaults, env override order, HOSTNAME, annotations, pod namespaces, cgroup', async () => {
    const spec = await containerSpec(
      input(config({ envs: [{ key: 'A', value: 'config' }], labels: { l: '1' } }), {
        sandboxConfig: {
          ...sandboxConfig,
          linux: { cgroupParent: '/kubepods/pod1' },
        } as wire.cri.PodSandboxConfig,
      }),
    );
    expect(spec.process?.args).toEqual(['/entry', 'cmd']);
    expect(spec.process?.cwd).toBe('/w');
    expect(spec.process?.env).toEqual(['PATH=/img', 'HOSTNAME=pod-host', 'A=image', 'A=config']);
    expect(spec.process?.rlimits).toBeUndefined();
    expect(spec.process?.noNewPrivileges).toBeUndefined();
    expect(spec.root).toEqual({ path: 'rootfs' });
    expect(spec.mounts?.map((m) => m.destination)).not.toContain('/run');
    expect(spec.mounts?.find((m) => m.destination === '/sys/fs/cgroup')?.options).toContain('ro');
    expect(spec.linux?.cgroupsPath).toBe('/kubepods/pod1/cid');
    expect(spec.linux?.namespaces).toEqual([
      { type: 'pid', path: '/proc/42/ns/pid' },
      { type: 'ipc', path: '/proc/42/ns/ipc' },
      { type: 'uts', path: '/proc/42/ns/uts' },
      { type: 'mount' },
      { type: 'network', path: '/proc/42/ns/net' },
    ]);
    expect(spec.annotations).toEqual({
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.sandbox-id': 'sid',
      'io.kubernetes.cri.sandbox-namespace': 'ns',
      'io.kubernetes.cri.sandbox-name': 'p',
      'io.kubernetes.cri.sandbox-uid': 'u',
      'io.kubernetes.cri.container-name': 'c',
      'io.kubernetes.cri.image-name': 'docker.io/library/img:latest',
    });
    expect(spec.process?.user).toEqual({ uid: 0, gid: 0, additionalGids: [0, 10] });
  });

  test('PID CONTAINER keeps its own PID namespace; TARGET joins the target', async () => {
    const own = await containerSpec(
      input(config({ linux: linux({ namespaceOptions: { pid: 'CONTAINER' } as wire.cri.NamespaceOption }) })),
    );
    expect(own.linux?.namespaces).toContainEqual({ type: 'pid' });
    const target = await containerSpec(
      input(config({ linux: linux({ namespaceOptions: { pid: 'TARGET' } as wire.cri.NamespaceOption }) }), {
        targetPid: 77,
      }),
    );
    expect(target.linux?.namespaces).toContainEqual({ type: 'pid', path: '/proc/77/ns/pid' });
  });

  test('users: image User name, run_as_user, run_as_username, run_as_group, supplemental groups', async () => {
    const byImage = await containerSpec(input(config(), { image: { Cmd: ['x'], User: 'app' } }));
    // containerd looks the extra groups up for the CRI user (uid 0 when none), then merges
    expect(byImage.process?.user).toEqual({ uid: 1234, gid: 1234, additionalGids: [10, 1234] });
    const byUid = await containerSpec(input(config({ linux: linux({ runAsUser: { value: 1234 } }) })));
    expect(byUid.process?.user).toEqual({ uid: 1234, gid: 1234, additionalGids: [1234, 2000] });
    const byName = await containerSpec(
      input(config({ linux: linux({ runAsUsername: 'app', supplementalGroups: [99, 2000] }) })),
    );
    expect(byName.process?.user).toEqual({ uid: 1234, gid: 1234, additionalGids: [99, 1234, 2000] });
    const withGroup = await containerSpec(
      input(config({ linux: linux({ runAsUser: { value: 1234 }, runAsGroup: { value: 5 } }) })),
    );
    expect(withGroup.process?.user.uid).toBe(1234);
    expect(withGroup.process?.user.gid).toBe(5);
    await expect(containerSpec(input(config({ linux: linux({ runAsUsername: 'ghost' }) })))).rejects.toThrow(
      /user "ghost" not found/,
    );
  });

  test('capabilities, privileged (only in a privileged pod), read-only rootfs, no_new_privs, masked paths', async () => {
    const caps = await containerSpec(
      input(
        config({
          linux: linux({
            capabilities: {
              addCapabilities: ['sys_admin'],
              dropCapabilities: ['CHOWN'],
              addAmbientCapabilities: [],
            },
            readonlyRootfs: true,
            noNewPrivs: true,
            maskedPaths: ['/proc/x'],
            readonlyPaths: ['/proc/y'],
          }),
        }),
      ),
    );
    expect(caps.process?.capabilities?.bounding).toContain('CAP_SYS_ADMIN');
    expect(caps.process?.capabilities?.bounding).not.toContain('CAP_CHOWN');
    expect(caps.root?.readonly).toBe(true);
    expect(caps.process?.noNewPrivileges).toBe(true);
    expect(caps.linux?.maskedPaths).toEqual(['/proc/x']);
    expect(caps.linux?.readonlyPaths).toEqual(['/proc/y']);
    // The kubelet sends its whole list; none (procMount Unmasked) masks nothing, as containerd.
    const defaults = await containerSpec(input(config()));
    expect(defaults.linux?.maskedPaths).toBeUndefined();
    expect(defaults.linux?.readonlyPaths).toBeUndefined();
    await expect(containerSpec(input(config({ linux: linux({ privileged: true }) })))).rejects.toThrow(
      /no privileged container allowed in sandbox/,
    );
    const priv = await containerSpec(
      input(config({ linux: linux({ privileged: true }) }), {
        sandboxConfig: {
          ...sandboxConfig,
          linux: { securityContext: { privileged: true } },
        } as wire.cri.PodSandboxConfig,
      }),
    );
    expect(priv.linux?.maskedPaths).toBeUndefined();
    expect(priv.linux?.resources?.devices).toContainEqual({ allow: true, access: 'rwm' });
  });

  test('resources and oom_score_adj, clamped to the daemon’s own with restrict_oom_score_adj', async () => {
    const r = {
      cpuPeriod: 100000,
      cpuQuota: 50000,
      cpuShares: 512,
      memoryLimitInBytes: 1 << 26,
      cpusetCpus: '0',
      oomScoreAdj: -1000,
    };
    const spec = await containerSpec(input(config({ linux: linux({}, r) })));
    expect(spec.linux?.resources?.cpu).toEqual({ period: 100000, quota: 50000, shares: 512, cpus: '0' });
    expect(spec.linux?.resources?.memory).toEqual({ limit: 1 << 26 });
    expect(spec.process?.oomScoreAdj).toBe(-1000);
    const own = Number((await import('node:fs')).readFileSync('/proc/self/oom_score_adj', 'utf8').trim());
    const clamped = await containerSpec(
      input(config({ linux: linux({}, r) }), { restrictOomScoreAdj: true }),
    );
    expect(clamped.process?.oomScoreAdj).toBe(Math.max(-1000, own));
    expect(linuxResources(undefined)).toEqual({});
    // where swap is accounted, a memory limit caps swap too unless a swap limit is given
    expect(
      linuxResources({ ...r, memorySwapLimitInBytes: 0 } as wire.cri.LinuxContainerResources, true).memory,
    ).toEqual({
      limit: 1 << 26,
      swap: 1 << 26,
    });
    expect(
      linuxResources({ ...r, memorySwapLimitInBytes: 1 << 27 } as wire.cri.LinuxContainerResources, true)
        .memory,
    ).toEqual({ limit: 1 << 26, swap: 1 << 27 });
  });

  test('mounts: binds with propagation, the config wins over the pod files, a missing host path is made', async () => {
    const host = join(rootfs, 'data');
    const made = join(rootfs, 'made', 'here');
    const mountinfo = `1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n2 1 0:5 / ${rootfs} rw master:3 - tmpfs t rw\n`;
    await mkdir(host, { recursive: true });
    const c = config({
      mounts: [
        {
          containerPath: '/data',
          hostPath: host,
          readonly: true,
          selinuxRelabel: false,
          propagation: 'PROPAGATION_HOST_TO_CONTAINER',
        },
        {
          containerPath: '/etc/hosts',
          hostPath: host,
          readonly: false,
          selinuxRelabel: false,
          propagation: 'PROPAGATION_PRIVATE',
        },
        {
          containerPath: '/made',
          hostPath: made,
          readonly: false,
          selinuxRelabel: false,
          propagation: 'PROPAGATION_PRIVATE',
        },
      ],
    });
    const extra = sandboxMounts(c, {
      hostsPath: '/pod/hosts',
      resolvConfPath: '/pod/resolv',
      shmPath: '/pod/shm',
    });
    expect(extra.map((m) => m.containerPath)).toEqual(['/etc/resolv.conf', '/dev/shm']);
    await writeFile(join(rootfs, 'resolv'), '');
    const spec = await containerSpec(
      input(c, {
        extraMounts: [{ ...extra[0]!, hostPath: join(rootfs, 'resolv') }],
        mountinfo,
      }),
    );
    const data = spec.mounts?.find((m) => m.destination === '/data');
    expect(data).toEqual({
      destination: '/data',
      type: 'bind',
      source: host,
      options: ['rbind', 'rslave', 'ro'],
    });
    expect(spec.linux?.rootfsPropagation).toBe('rslave');
    expect(spec.mounts?.find((m) => m.destination === '/etc/hosts')?.source).toBe(host);
    expect(spec.mounts?.find((m) => m.destination === '/made')?.source).toBe(made);
    // bidirectional needs a shared host mount: this one is a slave
    await expect(
      containerSpec(
        input(
          config({
            mounts: [
              {
                containerPath: '/d',
                hostPath: host,
                readonly: false,
                selinuxRelabel: false,
                propagation: 'PROPAGATION_BIDIRECTIONAL',
              },
            ],
          }),
          { mountinfo },
        ),
      ),
    ).rejects.toThrow(`path "${host}" is mounted on "${rootfs}" but it is not a shared mount`);
  });

  test('IPC NODE uses the host /dev/shm; a read-only rootfs makes the pod files read-only', () => {
    const c = config({
      linux: linux({ readonlyRootfs: true, namespaceOptions: { ipc: 'NODE' } as wire.cri.NamespaceOption }),
    });
    const m = sandboxMounts(c, { hostsPath: '/h', resolvConfPath: '/r', shmPath: '/pod/shm' });
    expect(m.find((x) => x.containerPath === '/dev/shm')?.hostPath).toBe('/dev/shm');
    expect(m.find((x) => x.containerPath === '/etc/hosts')?.readonly).toBe(true);
  });

  test('seccomp: a localhost profile is loaded; a path without localhost/ is refused; none when privileged', async () => {
    const profile = {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['chmod'], action: 'SCMP_ACT_ERRNO' }],
    };
    const file = join(rootfs, 'profile.json');
    await writeFile(file, JSON.stringify(profile));
    const sc = (over: Sc) => config({ linux: linux(over) });
    const local = await containerSpec(
      input(sc({ seccomp: { profileType: 'Localhost', localhostRef: file } })),
    );
    expect(local.linux?.seccomp).toEqual(profile);
    const byPath = await containerSpec(input(sc({ seccompProfilePath: `localhost/${file}` })));
    expect(byPath.linux?.seccomp).toEqual(profile);
    await expect(containerSpec(input(sc({ seccompProfilePath: file })))).rejects.toThrow(
      `seccomp_profile_path "${file}" is invalid`,
    );
    await expect(
      containerSpec(input(sc({ seccomp: { profileType: 'Localhost', localhostRef: '/no/such.json' } }))),
    ).rejects.toThrow(/cannot load seccomp profile "\/no\/such.json"/);
    const unconfined = await containerSpec(
      input(sc({ seccomp: { profileType: 'Unconfined', localhostRef: '' } })),
    );
    expect(unconfined.linux?.seccomp).toBeUndefined();
    const priv = await containerSpec(
      input(sc({ privileged: true, seccomp: { profileType: 'Localhost', localhostRef: file } }), {
        sandboxConfig: {
          ...sandboxConfig,
          linux: { securityContext: { privileged: true } },
        } as wire.cri.PodSandboxConfig,
      }),
    );
    expect(priv.linux?.seccomp).toBeUndefined();
  });

  test('image volumes: a directory each, except where the config mounts the path', () => {
    let n = 0;
    const c = config({
      mounts: [
        {
          containerPath: '/data/',
          hostPath: '/h',
          readonly: false,
          selinuxRelabel: false,
          propagation: 'PROPAGATION_PRIVATE',
        },
      ],
    });
    const v = imageVolumeMounts(c, { '/data': {}, '/cache': {} }, '/root/containers/cid', () => `v${++n}`);
    expect(v).toEqual([
      {
        containerPath: '/cache',
        hostPath: '/root/containers/cid/volumes/v1',
        readonly: false,
        selinuxRelabel: false,
        propagation: 'PROPAGATION_PRIVATE',
      },
    ]);
    expect(imageVolumeMounts(c, undefined, '/r', () => 'x')).toEqual([]);
  });

  test('cgroupsPath: a systemd slice parent uses the slice:prefix:name form', () => {
    expect(cgroupsPath('kubepods-pod1.slice', 'cid')).toBe('kubepods-pod1.slice:cri-containerd:cid');
    expect(cgroupsPath('/kubepods/pod1', 'cid')).toBe('/kubepods/pod1/cid');
  });
});

describe('CRI log lines', () => {
  test('format', () => {
    const t = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 600));
    expect(criLogLine(t, 'stderr', true, Buffer.from('x')).toString()).toBe(
      '2026-01-02T03:04:05.6Z stderr P x\n',
    );
  });

  test('splitting at the maximum line size, across chunks, and a last line without newline', () => {
    const out: string[] = [];
    const s = new CriLineSplitter(4, (p, t) => out.push(`${p ? 'P' : 'F'}:${t.toString()}`));
    s.push(Buffer.from('ab\ncdefg'));
    s.push(Buffer.from('hi\r\n1234\n'));
    s.push(Buffer.from('tail'));
    expect(out).toEqual(['F:ab', 'P:cdef', 'F:ghi', 'F:1234']);
    s.end();
    expect(out.at(-1)).toBe('F:tail');
  });

  test('no maximum: lines are whole', () => {
    const out: string[] = [];
    const s = new CriLineSplitter(-1, (p, t) => out.push(`${p ? 'P' : 'F'}:${t.toString()}`));
    s.push(Buffer.from(`${'x'.repeat(100000)}\n`));
    expect(out).toEqual([`F:${'x'.repeat(100000)}`]);
  });
});

describe('parseSignal', () => {
  test('names, short names, numbers, real-time signals; bad ones named', () => {
    expect(parseSignal('SIGTERM')).toBe(15);
    expect(parseSignal('quit')).toBe(3);
    expect(parseSignal('9')).toBe(9);
    expect(parseSignal('SIGRTMIN+3')).toBe(37);
    expect(() => parseSignal('SIGNOPE')).toThrow(/invalid stop signal "SIGNOPE"/);
  });
});
