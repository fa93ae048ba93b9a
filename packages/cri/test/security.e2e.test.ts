/**
 * The security context end to end: containers under berth's runtime/default seccomp profile
 * (runc applying it through libseccomp) are denied what crosses the container boundary with
 * EPERM, and allowed it when they hold the capability; unconfined ones are not filtered; the
 * AppArmor, SELinux and localhost-profile errors reach crictl with the field named.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { useCriDaemon } from '@berth/testkit';
import { detectLsmHost } from '../src/security/lsm';

const cri = useCriDaemon({
  name: 'sec',
  images: { 'e2e/sec:v1': { layers: ['busybox'], config: { Cmd: ['sh'] } } },
  pull: ['e2e/sec:v1'],
});
const image = () => cri.image('e2e/sec:v1');

const crictl = (...args: string[]) => cri.crictl(...args);
const ok = (...args: string[]) => cri.ok(...args);

let seq = 0;
const writeJson = async (name: string, v: unknown): Promise<string> => cri.writeJson(name, v);

/** A host-network pod (no CNI needed) with the given pod security context. */
async function pod(securityContext: Record<string, unknown> = {}): Promise<{ id: string; path: string }> {
  const n = ++seq;
  const path = await writeJson('pod', {
    metadata: { name: `sec${n}`, namespace: 'e2e', uid: `uid-${n}`, attempt: 0 },
    log_directory: cri.logDir(`pod${n}`),
    linux: { security_context: { namespace_options: { network: 2 }, ...securityContext } },
  });
  return { id: await ok('runp', path), path };
}

async function container(name: string, securityContext: Record<string, unknown>) {
  return writeJson(name, {
    metadata: { name, attempt: 0 },
    image: { image: image() },
    command: ['sleep', '100000'],
    linux: { security_context: securityContext },
  });
}

/** Starts a container in a fresh pod and returns a shell runner printing `rc=N` after each command. */
async function running(name: string, securityContext: Record<string, unknown>) {
  const p = await pod();
  const id = await ok('create', p.id, await container(name, securityContext), p.path);
  await ok('start', id);
  const sh = async (cmd: string) => {
    const r = await crictl('exec', '-s', id, 'sh', '-c', `mkdir -p /m; ${cmd} 2>&1; echo rc=$?`);
    return r.stdout.trim();
  };
  return { sh, id, pod: p };
}

describe('seccomp runtime/default', () => {
  test('denies making namespaces with EPERM; the same call unconfined succeeds', async () => {
    const confined = await running('confined', { seccomp_profile_path: 'runtime/default' });
    expect(await confined.sh('grep "^Seccomp:" /proc/self/status')).toMatch(/Seccomp:\s+2/);
    // A user namespace needs no capability from the kernel: only the profile stops it.
    expect(await confined.sh('unshare -U true')).toMatch(/Operation not permitted[\s\S]*rc=1$/);
    expect(await confined.sh('unshare -Urm sh -c "mount -t tmpfs t /m"')).toMatch(/Operation not permitted/);

    const free = await running('unconfined', { seccomp_profile_path: 'unconfined' });
    expect(await free.sh('grep "^Seccomp:" /proc/self/status')).toMatch(/Seccomp:\s+0/);
    expect(await free.sh('unshare -U true')).toBe('rc=0');
    expect(await free.sh('unshare -Urm sh -c "mount -t tmpfs t /m"')).toBe('rc=0');
  }, 120_000);

  test('CAP_SYS_ADMIN lifts the mount and namespace groups; the SecurityProfile form is the same profile', async () => {
    const admin = await running('admin', {
      seccomp: { profile_type: 0 }, // RuntimeDefault
      capabilities: { add_capabilities: ['SYS_ADMIN'] },
    });
    expect(await admin.sh('grep "^Seccomp:" /proc/self/status')).toMatch(/Seccomp:\s+2/);
    expect(await admin.sh('unshare -m true')).toBe('rc=0');
    expect(await admin.sh('mount -t tmpfs t /m && grep " /m " /proc/mounts')).toMatch(/tmpfs[\s\S]*rc=0$/);
    // docker/default is the same profile: without the capability the mount is denied.
    const plain = await running('plain', { seccomp_profile_path: 'docker/default' });
    expect(await plain.sh('mount -t tmpfs t /m')).not.toMatch(/rc=0$/);
    const spec = JSON.parse(await ok('inspect', admin.id)).info.runtimeSpec;
    const calls = (spec.linux.seccomp.syscalls as { names: string[] }[]).flatMap((s) => s.names);
    expect(calls).not.toContain('mount');
    expect(spec.linux.seccomp.architectures).toContain('SCMP_ARCH_X86_64');
  }, 120_000);

  test('the pause container of a runtime/default pod runs under the profile too', async () => {
    const p = await pod({ seccomp_profile_path: 'runtime/default' });
    const pid = (JSON.parse(await ok('inspectp', p.id)) as { info: { pid: number } }).info.pid;
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    expect(status).toMatch(/^Seccomp:\s+2$/m);
  }, 60_000);
});

describe('errors reach crictl naming the field', () => {
  test('a missing localhost profile, AppArmor and SELinux that cannot be applied', async () => {
    const p = await pod();
    const missing = join(cri.dir, 'no-such-profile.json');
    // crictl prints the gRPC status with its quotes escaped
    const create = async (name: string, sc: Record<string, unknown>) => {
      const r = await crictl('create', p.id, await container(name, sc), p.path);
      return { code: r.code, stderr: r.stderr.replace(/\\"/g, '"') };
    };
    const local = await create('local', { seccomp_profile_path: `localhost/${missing}` });
    expect(local.code).not.toBe(0);
    expect(local.stderr).toContain(`cannot load seccomp profile "${missing}"`);
    expect(local.stderr).toMatch(/InvalidArgument/);

    const aa = await create('aa', { apparmor_profile: 'runtime/default' });
    expect(aa.code).not.toBe(0);
    if (detectLsmHost().apparmor) expect(aa.stderr).toContain('berth has no default AppArmor profile');
    else expect(aa.stderr).toContain('apparmor "runtime/default" cannot be applied: AppArmor is not enabled');
    expect(aa.stderr).toMatch(/FailedPrecondition/);
    // unconfined is accepted everywhere
    await ok('create', p.id, await container('aa-unconfined', { apparmor_profile: 'unconfined' }), p.path);

    const se = await create('se', { selinux_options: { type: 'spc_t' } });
    expect(se.code).not.toBe(0);
    expect(se.stderr).toContain('selinux_options "type=spc_t" cannot be applied');

    // A pod's own: refused at RunPodSandbox, leaving no pod behind.
    const before = await ok('pods', '-q');
    const badPod = await writeJson('pod', {
      metadata: { name: 'badpod', namespace: 'e2e', uid: 'uid-bad', attempt: 0 },
      linux: {
        security_context: { namespace_options: { network: 2 }, seccomp_profile_path: `localhost/${missing}` },
      },
    });
    const runp = await crictl('runp', badPod);
    expect(runp.code).not.toBe(0);
    expect(runp.stderr.replace(/\\"/g, '"')).toContain(`cannot load seccomp profile "${missing}"`);
    expect(await ok('pods', '-q')).toBe(before);
  }, 60_000);
});
