import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, type wire } from '@berth/api';
import { oci } from '@berth/client';
import { type ContainerSpecInput, containerSpec } from '../src/container/spec';
import { sandboxSpec } from '../src/sandbox/spec';
import { checkAppArmor, checkSelinux, detectLsmHost } from '../src/security/lsm';
import {
  defaultSeccompProfile,
  type LinuxSeccomp,
  readLocalhostProfile,
  SAFE_PERSONALITIES,
  SECCOMP_GROUPS,
} from '../src/security/seccomp';

/** The syscalls a profile denies whatever the arguments. */
function deniedOutright(p: LinuxSeccomp): Set<string> {
  return new Set((p.syscalls ?? []).filter((s) => !s.args?.length).flatMap((s) => s.names));
}

const defaultCaps = () => oci.defaultSpec('k8s.io', 'x').process!.capabilities!.bounding!;

describe('defaultSeccompProfile', () => {
  test('x86_64 names its i386 and x32 ABIs; arm64 its arm one; an unknown arch is refused', () => {
    expect(defaultSeccompProfile({ capabilities: [], arch: 'x64' }).architectures).toEqual([
      'SCMP_ARCH_X86_64',
      'SCMP_ARCH_X86',
      'SCMP_ARCH_X32',
    ]);
    expect(defaultSeccompProfile({ capabilities: [], arch: 'arm64' }).architectures).toEqual([
      'SCMP_ARCH_AARCH64',
      'SCMP_ARCH_ARM',
    ]);
    expect(() => defaultSeccompProfile({ capabilities: [], arch: 'mips' })).toThrow(InvalidArgumentError);
    expect(() => defaultSeccompProfile({ capabilities: [], arch: 'mips' })).toThrow(/"mips"/);
  });

  test('default capabilities: allow by default, the boundary-crossing calls fail with EPERM', () => {
    const p = defaultSeccompProfile({ capabilities: defaultCaps(), arch: 'x64' });
    expect(p.defaultAction).toBe('SCMP_ACT_ALLOW');
    const denied = deniedOutright(p);
    for (const name of [
      'mount',
      'umount2',
      'pivot_root',
      'setns',
      'init_module',
      'finit_module',
      'kexec_load',
      'reboot',
      'bpf',
      'perf_event_open',
      'ptrace',
      'process_vm_readv',
      'keyctl',
      'add_key',
      'clock_settime',
      'settimeofday',
      'swapon',
      'acct',
      'quotactl',
      'iopl',
      'ioperm',
      'open_by_handle_at',
      'userfaultfd',
      'move_mount',
      'fsopen',
    ])
      expect(denied).toContain(name);
    // Inside the container's own namespaces: left to the kernel's capability checks.
    for (const name of ['sethostname', 'chroot', 'mknod', 'adjtimex', 'clone', 'unshare', 'personality'])
      expect(denied).not.toContain(name);
    const eperm = p.syscalls!.find((s) => s.names.includes('mount'))!;
    expect(eperm).toMatchObject({ action: 'SCMP_ACT_ERRNO', errnoRet: 1 });
  });

  test('clone and unshare with a namespace flag are denied one flag per rule; clone3 is ENOSYS', () => {
    const p = defaultSeccompProfile({ capabilities: defaultCaps(), arch: 'x64' });
    const clone = p.syscalls!.filter((s) => s.names.includes('clone'));
    const unshare = p.syscalls!.filter((s) => s.names.includes('unshare'));
    expect(clone.map((s) => s.args![0]!.value)).toEqual([
      0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000,
    ]);
    for (const rule of clone) {
      expect(rule.args).toEqual([
        { index: 0, value: rule.args![0]!.value, valueTwo: rule.args![0]!.value, op: 'SCMP_CMP_MASKED_EQ' },
      ]);
    }
    // CLONE_NEWTIME only for unshare (in clone's flags the bit belongs to the exit signal).
    expect(unshare.map((s) => s.args![0]!.value)).toContain(0x80);
    expect(clone.map((s) => s.args![0]!.value)).not.toContain(0x80);
    expect(p.syscalls!.find((s) => s.names.includes('clone3'))).toEqual({
      names: ['clone3'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 38,
    });
    // s390x passes clone's flags second.
    const s390 = defaultSeccompProfile({ capabilities: [], arch: 's390x' });
    expect(s390.syscalls!.find((s) => s.names.includes('clone'))!.args![0]!.index).toBe(1);
  });

  test('personality is denied unless its argument is one of the safe values', () => {
    const p = defaultSeccompProfile({ capabilities: [], arch: 'x64' });
    const rule = p.syscalls!.find((s) => s.names.includes('personality'))!;
    expect(rule.action).toBe('SCMP_ACT_ERRNO');
    expect(rule.args).toEqual(SAFE_PERSONALITIES.map((value) => ({ index: 0, value, op: 'SCMP_CMP_NE' })));
    expect(SAFE_PERSONALITIES).not.toContain(0x0040000); // ADDR_NO_RANDOMIZE
  });

  test.each([
    [
      'CAP_SYS_ADMIN',
      ['mount', 'umount2', 'setns', 'pivot_root', 'swapon', 'quotactl', 'bpf', 'perf_event_open'],
    ],
    ['CAP_SYS_PTRACE', ['ptrace', 'process_vm_readv', 'process_vm_writev', 'userfaultfd']],
    ['CAP_SYS_MODULE', ['init_module', 'finit_module', 'delete_module']],
    ['CAP_SYS_BOOT', ['reboot', 'kexec_load', 'kexec_file_load']],
    ['CAP_SYS_TIME', ['settimeofday', 'clock_settime']],
    ['CAP_SYS_PACCT', ['acct']],
    ['CAP_SYS_RAWIO', ['iopl', 'ioperm']],
    ['CAP_SYS_NICE', ['mbind', 'set_mempolicy', 'migrate_pages', 'move_pages']],
    ['CAP_BPF', ['bpf']],
    ['CAP_PERFMON', ['perf_event_open']],
    ['CAP_DAC_READ_SEARCH', ['open_by_handle_at']],
    ['CAP_SYSLOG', ['syslog']],
  ])('%s lifts its group', (cap, calls) => {
    const without = deniedOutright(defaultSeccompProfile({ capabilities: defaultCaps(), arch: 'x64' }));
    const withCap = deniedOutright(
      defaultSeccompProfile({ capabilities: [...defaultCaps(), cap], arch: 'x64' }),
    );
    for (const c of calls) {
      expect(without).toContain(c);
      expect(withCap).not.toContain(c);
    }
    // Nothing else moves: keyrings stay denied whatever the capability.
    expect(withCap).toContain('keyctl');
  });

  test('CAP_SYS_ADMIN also allows making namespaces (no clone/unshare/clone3 rule)', () => {
    const p = defaultSeccompProfile({ capabilities: ['CAP_SYS_ADMIN'], arch: 'x64' });
    const names = p.syscalls!.flatMap((s) => s.names);
    expect(names).not.toContain('clone');
    expect(names).not.toContain('unshare');
    expect(names).not.toContain('clone3');
  });

  test('every group says why, and a syscall belongs to one group only', () => {
    const seen = new Set<string>();
    for (const g of SECCOMP_GROUPS) {
      expect(g.why.length).toBeGreaterThan(20);
      expect(g.syscalls.length).toBeGreaterThan(0);
      for (const s of g.syscalls) {
        expect(seen).not.toContain(s);
        seen.add(s);
      }
    }
  });
});

describe('localhost profiles', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-seccomp-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test('missing, not JSON, not an OCI seccomp object, relative: InvalidArgument naming the path', async () => {
    const missing = join(dir, 'none.json');
    await expect(readLocalhostProfile(missing)).rejects.toThrow(InvalidArgumentError);
    await expect(readLocalhostProfile(missing)).rejects.toThrow(missing);
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{not json');
    await expect(readLocalhostProfile(bad)).rejects.toThrow(`decoding seccomp profile "${bad}" failed`);
    const notOci = join(dir, 'array.json');
    await writeFile(notOci, '[1,2]');
    await expect(readLocalhostProfile(notOci)).rejects.toThrow(`"${notOci}" is not an OCI seccomp object`);
    const badCalls = join(dir, 'calls.json');
    await writeFile(badCalls, '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":{}}');
    await expect(readLocalhostProfile(badCalls)).rejects.toThrow('syscalls is not a list');
    await expect(readLocalhostProfile('relative.json')).rejects.toThrow(
      /"localhost\/relative.json".*absolute/,
    );
    const good = join(dir, 'good.json');
    await writeFile(good, '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}');
    await expect(readLocalhostProfile(good)).resolves.toEqual({
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [],
    });
  });
});

describe('AppArmor and SELinux', () => {
  const none = { apparmor: false, selinux: false };
  const field = 'container "c" linux.security_context';

  test('without AppArmor: unset and unconfined pass, any profile is FailedPrecondition naming field and value', () => {
    expect(checkAppArmor(field, undefined, '', false, none)).toBeUndefined();
    expect(checkAppArmor(field, undefined, 'unconfined', false, none)).toBeUndefined();
    expect(
      checkAppArmor(field, { profileType: 'Unconfined', localhostRef: '' }, '', false, none),
    ).toBeUndefined();
    const rd = () => checkAppArmor(field, undefined, 'runtime/default', false, none);
    expect(rd).toThrow(FailedPreconditionError);
    expect(rd).toThrow(
      'container "c" linux.security_context.apparmor "runtime/default" cannot be applied: AppArmor is not enabled on this host',
    );
    const local = () =>
      checkAppArmor(field, { profileType: 'Localhost', localhostRef: 'x' }, '', false, none);
    expect(local).toThrow(FailedPreconditionError);
    expect(local).toThrow('"localhost/x"');
    expect(() => checkAppArmor(field, undefined, 'bogus', false, none)).toThrow(InvalidArgumentError);
    expect(() => checkAppArmor(field, undefined, 'bogus', false, none)).toThrow('apparmor_profile "bogus"');
    expect(() =>
      checkAppArmor(field, { profileType: 'RuntimeDefault', localhostRef: 'x' }, '', false, none),
    ).toThrow(/localhost_ref "x" is only valid/);
  });

  test('with AppArmor: a profile the kernel has not loaded is refused; runtime/default when privileged is none', () => {
    const aa = { apparmor: true, selinux: false };
    expect(checkAppArmor(field, undefined, 'runtime/default', true, aa)).toBeUndefined();
    expect(() => checkAppArmor(field, undefined, 'runtime/default', false, aa)).toThrow(
      FailedPreconditionError,
    );
    expect(() => checkAppArmor(field, undefined, 'localhost/berth-no-such-profile', false, aa)).toThrow(
      /"localhost\/berth-no-such-profile": no such AppArmor profile is loaded/,
    );
  });

  test('SELinux: empty options pass; a user, role, type or level is FailedPrecondition naming it', () => {
    checkSelinux(field, undefined, none);
    checkSelinux(field, { user: '', role: '', type: '', level: '' }, none);
    const t = () => checkSelinux(field, { user: '', role: '', type: 'spc_t', level: 's0' }, none);
    expect(t).toThrow(FailedPreconditionError);
    expect(t).toThrow(
      'container "c" linux.security_context.selinux_options "type=spc_t,level=s0" cannot be applied: SELinux is not enabled on this host',
    );
    expect(() =>
      checkSelinux(field, { user: 'u', role: '', type: '', level: '' }, { ...none, selinux: true }),
    ).toThrow(/berth does not apply SELinux labels/);
  });
});

describe('security context in the specs', () => {
  let rootfs: string;
  beforeAll(async () => {
    rootfs = await mkdtemp(join(tmpdir(), 'cri-secctx-'));
  });
  afterAll(() => rm(rootfs, { recursive: true, force: true }));

  const sandboxConfig = (sc: Partial<wire.cri.LinuxSandboxSecurityContext> = {}) =>
    ({
      metadata: { name: 'p', namespace: 'ns', uid: 'u', attempt: 0 },
      hostname: 'h',
      logDirectory: '',
      portMappings: [],
      labels: {},
      annotations: {},
      linux: { securityContext: { supplementalGroups: [], ...sc }, sysctls: {} },
    }) as unknown as wire.cri.PodSandboxConfig;

  const input = (
    sc: Partial<wire.cri.LinuxContainerSecurityContext>,
    over: Partial<ContainerSpecInput> = {},
  ): ContainerSpecInput => ({
    id: 'cid',
    sandboxId: 'sid',
    sandboxPid: 42,
    config: {
      metadata: { name: 'c', attempt: 0 },
      command: ['/bin/sh'],
      args: [],
      envs: [],
      mounts: [],
      devices: [],
      linux: { securityContext: sc },
    } as unknown as wire.cri.ContainerConfig,
    sandboxConfig: sandboxConfig(),
    image: {},
    imageName: 'img',
    extraMounts: [],
    restrictOomScoreAdj: false,
    disableCgroup: false,
    rootfs,
    nodeHostname: 'node',
    mountinfo: '',
    swapAvailable: false,
    cgroupUnified: false,
    ...over,
  });

  test('runtime/default and docker/default give the default profile, relaxed by the added capabilities', async () => {
    for (const path of ['runtime/default', 'docker/default']) {
      const spec = await containerSpec(input({ seccompProfilePath: path }));
      expect(deniedOutright(spec.linux!.seccomp as LinuxSeccomp)).toContain('mount');
    }
    const admin = await containerSpec(
      input({
        seccomp: { profileType: 'RuntimeDefault', localhostRef: '' },
        capabilities: { addCapabilities: ['SYS_ADMIN'], dropCapabilities: [], addAmbientCapabilities: [] },
      }),
    );
    expect(deniedOutright(admin.linux!.seccomp as LinuxSeccomp)).not.toContain('mount');
    // Dropping ALL leaves even the default capabilities' calls denied.
    const dropped = await containerSpec(
      input({
        seccompProfilePath: 'runtime/default',
        capabilities: { addCapabilities: [], dropCapabilities: ['ALL'], addAmbientCapabilities: [] },
      }),
    );
    expect(dropped.linux!.seccomp).toEqual(defaultSeccompProfile({ capabilities: [] }));
  });

  test('privileged: no profile; unset and unconfined: none; a missing localhost file names its path', async () => {
    const priv = await containerSpec(
      input(
        { privileged: true, seccompProfilePath: 'runtime/default' },
        { sandboxConfig: sandboxConfig({ privileged: true }) },
      ),
    );
    expect(priv.linux?.seccomp).toBeUndefined();
    expect((await containerSpec(input({}))).linux?.seccomp).toBeUndefined();
    expect((await containerSpec(input({ seccompProfilePath: 'unconfined' }))).linux?.seccomp).toBeUndefined();
    await expect(
      containerSpec(input({ seccompProfilePath: 'localhost//no/such/profile.json' })),
    ).rejects.toThrow(InvalidArgumentError);
    await expect(
      containerSpec(input({ seccompProfilePath: 'localhost//no/such/profile.json' })),
    ).rejects.toThrow('"/no/such/profile.json"');
  });

  test('the pause container gets the pod profile; a privileged pod none', async () => {
    const base = {
      id: 'abc',
      namespace: 'k8s.io',
      image: { name: 'pause', config: { Entrypoint: ['/pause'] } },
      netnsPath: '/run/netns/x',
      shmPath: '/shm',
      resolvConfPath: '/resolv.conf',
      systemdCgroup: false,
      restrictOomScoreAdj: false,
      disableCgroup: false,
    };
    const spec = await sandboxSpec({
      ...base,
      config: sandboxConfig({ seccompProfilePath: 'runtime/default' }),
    });
    expect(spec.linux?.seccomp).toEqual(defaultSeccompProfile({ capabilities: defaultCaps() }));
    const priv = await sandboxSpec({
      ...base,
      config: sandboxConfig({
        privileged: true,
        seccomp: { profileType: 'RuntimeDefault', localhostRef: '' },
      }),
    });
    expect(priv.linux?.seccomp).toBeUndefined();
    await expect(
      sandboxSpec({
        ...base,
        config: sandboxConfig({ selinuxOptions: { user: '', role: '', type: 'container_t', level: '' } }),
      }),
    ).rejects.toThrow(/pod "p" linux.security_context.selinux_options "type=container_t"/);
  });

  test("AppArmor and SELinux fields reach the host's check", async () => {
    const host = detectLsmHost();
    const rd = containerSpec(input({ apparmorProfile: 'runtime/default' }));
    if (host.apparmor) await expect(rd).rejects.toThrow(/no default AppArmor profile/);
    else await expect(rd).rejects.toThrow(/AppArmor is not enabled on this host/);
    const ok = await containerSpec(input({ apparmor: { profileType: 'Unconfined', localhostRef: '' } }));
    expect(ok.process?.apparmorProfile).toBeUndefined();
    await expect(
      containerSpec(input({ selinuxOptions: { user: '', role: '', type: '', level: 's0:c1' } })),
    ).rejects.toThrow(FailedPreconditionError);
  });

  test('cgroup v2 gives a cgroup namespace (not to a privileged container, not on v1); no ambient capabilities', async () => {
    const v2 = await containerSpec(input({}, { cgroupUnified: true }));
    expect(v2.linux?.namespaces).toContainEqual({ type: 'cgroup' });
    const v1 = await containerSpec(input({}, { cgroupUnified: false }));
    expect(v1.linux?.namespaces?.some((n) => n.type === 'cgroup')).toBe(false);
    const priv = await containerSpec(
      input(
        { privileged: true },
        { cgroupUnified: true, sandboxConfig: sandboxConfig({ privileged: true }) },
      ),
    );
    expect(priv.linux?.namespaces?.some((n) => n.type === 'cgroup')).toBe(false);
    expect(v1.process?.capabilities?.ambient).toBeUndefined();
  });
});
