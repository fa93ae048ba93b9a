/**
 * Containers of pods end to end: berthd with an image from a loopback registry, host-network
 * pods (no CNI needed), driven by crictl: create/start/ps/inspect/exec -s/stop/rm, the log
 * file, user and groups from the image, errors, and berthd SIGKILLed and restarted under a
 * running container.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { grpcService, protoType, type wire } from '@berth/api';
import { ctr, type ImageRunConfig, useCriDaemon } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

const LOOP =
  "echo out-line; echo err-line >&2; trap 'exit 143' TERM; while true; do " +
  "if [ -f /tmp/long ]; then printf '%0100d\\n' 0; rm -f /tmp/long; fi; " +
  'if [ -f /tmp/go ]; then echo after-restart; rm -f /tmp/go; fi; sleep 0.1; done';

const crictl = (...args: string[]) => cri.crictl(...args);
const ok = (...args: string[]) => cri.ok(...args);

let seq = 0;
const writeJson = async (name: string, v: unknown): Promise<string> => cri.writeJson(name, v);

async function pod(): Promise<{ id: string; path: string; logDir: string; hostname: string }> {
  const n = ++seq;
  const logDir = cri.logDir(`pod${n}`);
  const path = await writeJson('pod', {
    metadata: { name: `pod${n}`, namespace: 'e2e', uid: `uid-${n}`, attempt: 0 },
    hostname: `pod${n}-host`,
    log_directory: logDir,
    linux: { security_context: { namespace_options: { network: 2 } } },
  });
  return { id: await ok('runp', path), path, logDir, hostname: `pod${n}-host` };
}

async function ctrConfig(name: string, over: Record<string, unknown> = {}): Promise<string> {
  return writeJson(name, {
    metadata: { name, attempt: 0 },
    image: { image: image() },
    log_path: `${name}.log`,
    labels: { app: name },
    ...over,
  });
}

/**
 * ListContainers over gRPC: crictl ps checks the image API first (ImageFsInfo), which is
 * another part's work.
 */
async function listContainers(filter: Partial<wire.cri.ContainerFilter> = {}): Promise<wire.cri.Container[]> {
  // int64 nanosecond times do not fit a JS number: decode them as strings here.
  const def = { ...grpcService('runtime.v1.RuntimeService') };
  const type = protoType('runtime.v1.ListContainersResponse');
  def.ListContainers = {
    ...def.ListContainers!,
    responseDeserialize: (b: Buffer) =>
      type.toObject(type.decode(b), { longs: String, enums: String, defaults: true }),
  };
  const Client = grpc.makeGenericClientConstructor(def, 'RuntimeService');
  const client = new Client(`unix://${cri.berthd.address}`, grpc.credentials.createInsecure()) as unknown as {
    ListContainers(req: unknown, cb: (e: Error | null, r: wire.cri.ListContainersResponse) => void): void;
    close(): void;
  };
  try {
    const res = await new Promise<wire.cri.ListContainersResponse>((resolve, reject) =>
      client.ListContainers(
        { filter: { id: '', podSandboxId: '', labelSelector: {}, state: undefined, ...filter } },
        (e, r) => (e ? reject(e) : resolve(r)),
      ),
    );
    return res.containers;
  } finally {
    client.close();
  }
}

interface Inspect {
  status: {
    id: string;
    state: string;
    exitCode: number;
    reason: string;
    message?: string;
    logPath: string;
    imageRef: string;
    labels: Record<string, string>;
  };
  info: {
    pid: number;
    sandboxID: string;
    runtimeSpec: {
      process: {
        args: string[];
        env: string[];
        cwd: string;
        user: { uid: number; gid: number; additionalGids?: number[] };
      };
      linux: { namespaces: { type: string; path?: string }[]; cgroupsPath: string };
      mounts: { destination: string; source: string; options: string[] }[];
      annotations: Record<string, string>;
    };
  };
}

const inspect = async (id: string): Promise<Inspect> => JSON.parse(await ok('inspect', id));

const until = (what: string, fn: () => Promise<boolean>) => cri.until(what, fn);

const cri = useCriDaemon({
  name: 'ctr',
  criConfig: { max_container_log_line_size: 64 },
  images: {
    'e2e/app:v1': {
      layers: [
        'busybox',
        [
          {
            path: 'etc/passwd',
            content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/tmp:/bin/sh\n',
          },
          { path: 'etc/group', content: 'root:x:0:\napp:x:1234:\nextra:x:2000:app\nother:x:3000:root\n' },
          // a file of its own (busybox's applets are symlinks: masking one would mask busybox)
          { path: 'bin/hello', content: '#!/bin/sh\necho hello\n', mode: 0o755 },
          { path: 'vol/seed', content: 'from-image\n' },
        ],
      ],
      config: {
        Entrypoint: ['/bin/sh', '-c'],
        // prints on demand: a file in /tmp asks for a long line or a marker
        Cmd: [LOOP],
        Env: ['FROM_IMAGE=image', 'OVERRIDE=image'],
        WorkingDir: '/tmp',
        User: 'app',
        Labels: { 'image.label': 'yes' },
        // a declared volume: the container gets a directory of its own, seeded from the image
        Volumes: { '/vol': {} },
      } as ImageRunConfig,
    },
  },
  pull: ['e2e/app:v1'],
});
const image = () => cri.image('e2e/app:v1');

describe('containers through crictl', () => {
  test('create, start, ps, inspect, exec -s, the log file, stop, rm', async () => {
    const p = await pod();
    const cfg = await ctrConfig('web', {
      envs: [
        { key: 'OVERRIDE', value: 'config' },
        { key: 'FROM_CONFIG', value: 'config' },
      ],
      linux: { security_context: { supplemental_groups: [5000] } },
    });
    const id = await ok('create', p.id, cfg, p.path);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    let st = await inspect(id);
    expect(st.status.state).toBe('CONTAINER_CREATED');
    expect(st.info.sandboxID).toBe(p.id);
    const spec = st.info.runtimeSpec;
    expect(spec.process.args).toEqual(['/bin/sh', '-c', LOOP]);
    expect(spec.process.env).toEqual(
      expect.arrayContaining([
        'FROM_IMAGE=image',
        'OVERRIDE=config',
        'FROM_CONFIG=config',
        `HOSTNAME=${p.hostname}`,
      ]),
    );
    // as containerd's WithEnv: a config env of the image's name comes after it (the last one wins in the process)
    expect(spec.process.env.indexOf('OVERRIDE=config')).toBeGreaterThan(
      spec.process.env.indexOf('OVERRIDE=image'),
    );
    expect(spec.process.cwd).toBe('/tmp');
    // image User "app": uid and gid from its /etc/passwd; groups: its primary, /etc/group's
    // "extra" for uid 0 is not app's (containerd looks groups up for the CRI user, 0 here), supplemental 5000
    expect(spec.process.user.uid).toBe(1234);
    expect(spec.process.user.gid).toBe(1234);
    expect(spec.process.user.additionalGids).toEqual(expect.arrayContaining([5000]));
    expect(spec.annotations['io.kubernetes.cri.container-type']).toBe('container');
    expect(spec.annotations['io.kubernetes.cri.sandbox-id']).toBe(p.id);
    const pausePid = (JSON.parse(await ok('inspectp', p.id)) as { info: { pid: number } }).info.pid;
    expect(spec.linux.namespaces).toEqual(
      expect.arrayContaining([
        { type: 'network', path: `/proc/${pausePid}/ns/net` },
        { type: 'ipc', path: `/proc/${pausePid}/ns/ipc` },
        { type: 'uts', path: `/proc/${pausePid}/ns/uts` },
        { type: 'pid', path: `/proc/${pausePid}/ns/pid` },
      ]),
    );
    const dests = spec.mounts.map((m) => m.destination);
    expect(dests).toEqual(expect.arrayContaining(['/etc/hosts', '/etc/resolv.conf', '/dev/shm']));

    await ok('start', id);
    st = await inspect(id);
    expect(st.status.state).toBe('CONTAINER_RUNNING');
    expect(st.info.pid).toBeGreaterThan(0);
    const ps = await listContainers();
    expect(ps.find((c) => c.id === id)?.state).toBe('CONTAINER_RUNNING');
    expect((await listContainers({ labelSelector: { app: 'web' } })).map((c) => c.id)).toEqual([id]);
    expect((await listContainers({ id: id.slice(0, 12) })).map((c) => c.id)).toEqual([id]);
    expect((await listContainers({ podSandboxId: p.id })).map((c) => c.id)).toEqual([id]);
    expect(await listContainers({ state: { state: 'CONTAINER_EXITED' }, podSandboxId: p.id })).toEqual([]);
    expect(await listContainers({ labelSelector: { app: 'nope' } })).toEqual([]);

    const logPath = join(p.logDir, 'web.log');
    expect(st.status.logPath).toBe(logPath);
    await until('the log lines', async () =>
      (await readFile(logPath, 'utf8').catch(() => '')).includes('err-line'),
    );
    const lines = (await readFile(logPath, 'utf8')).trim().split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z stdout F out-line$/),
        expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z stderr F err-line$/),
      ]),
    );

    // exec: uid from the image, the node's hostname (a host-network pod has the host's UTS), exit code, both streams
    const ex = await crictl('exec', '-s', id, 'sh', '-c', 'id -u; hostname; echo oops >&2; exit 7');
    expect(ex.code).not.toBe(0);
    expect(ex.stderr).toContain('exited with 7');
    expect(ex.stderr).toContain('oops');
    expect(await ok('exec', '-s', id, 'sh', '-c', 'id -u; hostname')).toBe(`1234\n${hostname()}`);
    expect(await ok('exec', '-s', id, 'sh', '-c', 'echo $OVERRIDE $FROM_CONFIG')).toBe('config config');
    expect(await ok('exec', '-s', id, 'cat', '/vol/seed')).toBe('from-image');
    const vol = spec.mounts.find((m) => m.destination === '/vol');
    expect(
      vol?.source.startsWith(join(cri.berthd.root, 'io.containerd.grpc.v1.cri', 'containers', id, 'volumes')),
    ).toBe(true);
    const id0 = await ok('exec', '-s', id, 'id', '-G');
    expect(id0.split(' ').map(Number)).toEqual(expect.arrayContaining([1234, 5000]));

    // a line longer than max_container_log_line_size (64) is split into P pieces and an F
    await ok('exec', '-s', id, 'touch', '/tmp/long');
    await until('the long line', async () => (await readFile(logPath, 'utf8')).includes(' stdout P '));
    const long = (await readFile(logPath, 'utf8')).split('\n').filter((l) => /stdout [PF] 0{10}/.test(l));
    expect(long.map((l) => l.split(' ')[2])).toEqual(['P', 'F']);
    expect(long.map((l) => l.split(' ').slice(3).join(' ').length)).toEqual([64, 36]);

    await ok('stop', '--timeout', '10', id);
    st = await inspect(id);
    expect(st.status.state).toBe('CONTAINER_EXITED');
    // sh exec'd sleep: SIGTERM kills it
    expect(st.status.exitCode).toBe(143);
    expect(st.status.reason).toBe('Error');
    await ok('stop', id); // idempotent on an exited container
    await ok('rm', id);
    expect((await crictl('inspect', id)).stderr).toMatch(/NotFound|not found/);
    await ok('rmp', '-f', p.id);
  }, 180_000);

  test('command and args, a container that exits by itself (Completed), exec timeout', async () => {
    const p = await pod();
    const done = await ok(
      'create',
      p.id,
      await ctrConfig('once', { command: ['/bin/echo'], args: ['hi'] }),
      p.path,
    );
    let st = await inspect(done);
    expect(st.info.runtimeSpec.process.args).toEqual(['/bin/echo', 'hi']);
    await ok('start', done);
    await until('the exit', async () => (await inspect(done)).status.state === 'CONTAINER_EXITED');
    st = await inspect(done);
    expect(st.status.exitCode).toBe(0);
    expect(st.status.reason).toBe('Completed');
    expect(await readFile(join(p.logDir, 'once.log'), 'utf8')).toMatch(/ stdout F hi\n$/);
    // crictl reads the file back through ContainerStatus' log path
    const logs = await crictl('logs', done);
    expect(logs.stdout).toBe('hi\n');
    // starting it again is refused: it is not CREATED
    expect((await crictl('start', done)).stderr).toMatch(/CONTAINER_EXITED/);
    // exec into an exited container
    expect((await crictl('exec', '-s', done, 'true')).stderr).toMatch(/CONTAINER_EXITED/);

    const argsOnly = await ok('create', p.id, await ctrConfig('args', { args: ['sleep 100000'] }), p.path);
    expect((await inspect(argsOnly)).info.runtimeSpec.process.args).toEqual([
      '/bin/sh',
      '-c',
      'sleep 100000',
    ]);
    await ok('start', argsOnly);
    const slow = await crictl('exec', '-s', '--timeout', '1', argsOnly, 'sleep', '30');
    expect(slow.code).not.toBe(0);
    expect(slow.stderr).toMatch(/timeout 1s exceeded/);
    // an exec that cannot start is an error naming the command, and nothing else breaks
    const missing = await crictl('exec', '-s', argsOnly, '/no/such/cmd');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('/no/such/cmd');
    // the container stays usable
    expect(await ok('exec', '-s', argsOnly, 'echo', 'alive')).toBe('alive');
    // rm of a running container stops it first
    await ok('rm', '-f', argsOnly);
    await ok('rm', done);
    await ok('rmp', '-f', p.id);
  }, 180_000);

  test('a container over its memory limit exits OOMKilled; UpdateContainerResources reaches its cgroup', async () => {
    const p = await pod();
    const hog = await ok(
      'create',
      p.id,
      await ctrConfig('hog', {
        command: ['/bin/sh', '-c', 'sleep 1; x=aaaaaaaa; while true; do x=$x$x; done'],
        linux: { resources: { memory_limit_in_bytes: 32 << 20 } },
      }),
      p.path,
    );
    expect((await inspect(hog)).info.runtimeSpec.linux).toMatchObject({
      resources: { memory: { limit: 32 << 20 } },
    });
    await ok('start', hog);
    await until('the OOM kill', async () => (await inspect(hog)).status.state === 'CONTAINER_EXITED');
    const st = await inspect(hog);
    expect(st.status.exitCode).toBe(137);
    expect(st.status.reason).toBe('OOMKilled');

    const idle = await ok(
      'create',
      p.id,
      await ctrConfig('resized', { command: ['sleep', '100000'] }),
      p.path,
    );
    await ok('start', idle);
    await ok('update', '--memory', String(48 << 20), idle);
    const cg = (await inspect(idle)).info.runtimeSpec.linux.cgroupsPath;
    expect((await inspect(idle)).info.runtimeSpec.linux).toMatchObject({
      resources: { memory: { limit: 48 << 20 } },
    });
    expect(Number((await readFile(`/sys/fs/cgroup/memory${cg}/memory.limit_in_bytes`, 'utf8')).trim())).toBe(
      48 << 20,
    );
    await ok('rm', '-f', idle);
    await ok('rm', hog);
    await ok('rmp', '-f', p.id);
  }, 120_000);

  test('masked and read-only paths, read-only rootfs, capabilities', async () => {
    const p = await pod();
    const id = await ok(
      'create',
      p.id,
      await ctrConfig('secure', {
        command: ['sleep', '100000'],
        linux: {
          security_context: {
            masked_paths: ['/bin/hello'],
            readonly_paths: ['/etc'],
            capabilities: { drop_capabilities: ['ALL'], add_capabilities: ['NET_RAW'] },
            run_as_user: { value: 0 },
          },
        },
      }),
      p.path,
    );
    const spec = (await inspect(id)).info.runtimeSpec as unknown as {
      linux: { maskedPaths: string[]; readonlyPaths: string[] };
      process: { capabilities: { bounding: string[] } };
    };
    expect(spec.linux.maskedPaths).toEqual(['/bin/hello']);
    expect(spec.linux.readonlyPaths).toEqual(['/etc']);
    expect(spec.process.capabilities.bounding).toEqual(['CAP_NET_RAW']);
    await ok('start', id);
    const hello = await crictl('exec', '-s', id, '/bin/sh', '-c', '/bin/hello');
    expect(hello.stderr).toMatch(/exited with 126/);
    expect((await crictl('exec', '-s', id, 'touch', '/etc/x')).stderr).toMatch(/Read-only file system/);
    expect(await ok('exec', '-s', id, 'sh', '-c', 'grep CapBnd /proc/self/status')).toMatch(
      /0000000000002000$/,
    );
    await ok('rm', '-f', id);
    await ok('rmp', '-f', p.id);
  }, 120_000);

  test('stopping the pod stops its containers; removing it removes them, records and snapshots', async () => {
    const p = await pod();
    const id = await ok('create', p.id, await ctrConfig('member', { command: ['sleep', '100000'] }), p.path);
    await ok('start', id);
    await ok('stopp', p.id);
    const st = await inspect(id);
    expect(st.status.state).toBe('CONTAINER_EXITED');
    expect(st.status.exitCode).toBe(137);
    const records = async () =>
      (await ctr(cri.berthd.address, ['-n', 'k8s.io', 'containers', 'ls', '-q'])).stdout.split('\n');
    const snapshots = async () => (await ctr(cri.berthd.address, ['-n', 'k8s.io', 'snapshots', 'ls'])).stdout;
    expect(await records()).toContain(id);
    expect(await snapshots()).toContain(id);
    // the snapshot was a gc root only until the container record held it (the pod's too)
    for (const key of [id, p.id]) {
      const info = await ctr(cri.berthd.address, ['-n', 'k8s.io', 'snapshots', 'info', key]);
      expect(info.stdout).toContain(key);
      expect(info.stdout).not.toContain('gc.root');
    }
    await ok('rmp', p.id);
    expect((await crictl('inspect', id)).stderr).toMatch(/NotFound/);
    expect(await records()).not.toContain(id);
    expect(await snapshots()).not.toContain(id);
  }, 120_000);

  test('the task made ahead of StartContainer: removed unstarted, failing, resized, its pod stopped', async () => {
    const p = await pod();
    /** The task's status and pid as ctr lists them; undefined when there is no task. */
    const task = async (id: string): Promise<{ status: string; pid: number } | undefined> => {
      const out = (await ctr(cri.berthd.address, ['-n', 'k8s.io', 'tasks', 'ls'])).stdout;
      const row = out.split('\n').find((l) => l.startsWith(id));
      if (!row) return undefined;
      const [, pid, status] = row.trim().split(/\s+/);
      return { status: status!, pid: Number(pid) };
    };
    const made = (id: string) =>
      until('the task made ahead', async () => (await task(id))?.status === 'CREATED');
    const bundle = (id: string) => join(cri.berthd.state, 'io.containerd.runtime.v2.task', 'k8s.io', id);

    // removed before its start: the waiting process, the task and its bundle go
    const unstarted = await ok(
      'create',
      p.id,
      await ctrConfig('unstarted', { command: ['sleep', '100000'] }),
      p.path,
    );
    await made(unstarted);
    expect((await inspect(unstarted)).status.state).toBe('CONTAINER_CREATED');
    const waiting = (await task(unstarted))!.pid;
    expect(existsSync(bundle(unstarted))).toBe(true);
    await ok('rm', unstarted);
    expect(await task(unstarted)).toBeUndefined();
    expect(existsSync(bundle(unstarted))).toBe(false);
    await until('the waiting process to go', async () => !existsSync(`/proc/${waiting}`));

    // a task that cannot be made: StartContainer answers runc's error, the container is EXITED
    const broken = await ok(
      'create',
      p.id,
      await ctrConfig('broken', { command: ['/no/such/binary'] }),
      p.path,
    );
    const failed = await crictl('start', broken);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain('/no/such/binary');
    const st = await inspect(broken);
    expect(st.status.state).toBe('CONTAINER_EXITED');
    expect(st.status.exitCode).toBe(128);
    expect(st.status.reason).toBe('StartError');
    expect(st.status.message ?? '').toContain('/no/such/binary');
    expect(await task(broken)).toBeUndefined();
    expect((await crictl('start', broken)).stderr).toMatch(/CONTAINER_EXITED/);
    await ok('rm', broken);

    // limits changed before the start: the task made ahead from the old spec is made anew
    const resized = await ok(
      'create',
      p.id,
      await ctrConfig('resized-early', { command: ['sleep', '100000'] }),
      p.path,
    );
    await made(resized);
    await ok('update', '--memory', String(40 << 20), resized);
    await ok('start', resized);
    const cg = (await inspect(resized)).info.runtimeSpec.linux.cgroupsPath;
    expect(Number((await readFile(`/sys/fs/cgroup/memory${cg}/memory.limit_in_bytes`, 'utf8')).trim())).toBe(
      40 << 20,
    );
    await ok('rm', '-f', resized);

    // the pod stopped before the start: the task goes, the container stays CREATED, a start fails
    const late = await ok('create', p.id, await ctrConfig('late', { command: ['sleep', '100000'] }), p.path);
    await made(late);
    await ok('stopp', p.id);
    expect(await task(late)).toBeUndefined();
    expect((await inspect(late)).status.state).toBe('CONTAINER_CREATED');
    expect((await crictl('start', late)).stderr).toMatch(/not running/);
    expect((await inspect(late)).status.reason).toBe('StartError');
    await ok('rmp', p.id);
  }, 120_000);

  test('errors: unknown pod, name in use, missing image, unknown container', async () => {
    const p = await pod();
    const cfg = await ctrConfig('dup');
    const bad = await crictl('create', 'f'.repeat(64), cfg, p.path);
    expect(bad.stderr).toMatch(/NotFound/);
    expect(bad.stderr).toContain('f'.repeat(64));
    const first = await ok('create', p.id, cfg, p.path);
    const dup = await crictl('create', p.id, cfg, p.path);
    expect(dup.stderr).toMatch(/AlreadyExists/);
    expect(dup.stderr).toContain(first);
    const noImage = await crictl(
      'create',
      p.id,
      await ctrConfig('noimg', { image: { image: cri.image('e2e/missing:v9') } }),
      p.path,
    );
    expect(noImage.stderr).toMatch(/NotFound/);
    expect(noImage.stderr).toContain('e2e/missing:v9');
    const unknown = await crictl('inspect', 'abcdef0123456789');
    expect(unknown.stderr).toMatch(/NotFound/);
    expect(unknown.stderr).toContain('abcdef0123456789');
    expect((await crictl('stop', 'abcdef0123456789')).stderr).toMatch(/NotFound/);
    // removing what does not exist is no error, as with containerd (crictl finds nothing to
    // remove by that id, so go through the API with the full id of a removed container)
    await ok('rm', first);
    expect((await crictl('create', p.id, cfg, p.path)).code).toBe(0);
    await ok('rmp', '-f', p.id);
  }, 120_000);

  test('after SIGKILL and a restart a running container is listed, its exit noticed, stop and rm work', async () => {
    const p = await pod();
    const survivor = await ctrConfig('survivor');
    const id = await ok('create', p.id, survivor, p.path);
    await ok('start', id);
    const created = await ok('create', p.id, await ctrConfig('idle'), p.path);
    // its task made ahead of a start, which the restart then finds
    await until('the task made ahead', async () =>
      (await ctr(cri.berthd.address, ['-n', 'k8s.io', 'tasks', 'ls'])).stdout.includes(created),
    );
    const before = await inspect(id);
    await cri.berthd.stop('SIGKILL');
    await cri.restart();
    const after = await inspect(id);
    expect(after.status.state).toBe('CONTAINER_RUNNING');
    expect(after.info.pid).toBe(before.info.pid);
    expect((await inspect(created)).status.state).toBe('CONTAINER_CREATED');
    // the task made ahead lost its log readers with the daemon: the recovery deletes it
    expect((await ctr(cri.berthd.address, ['-n', 'k8s.io', 'tasks', 'ls'])).stdout).not.toContain(created);
    const ps = (await listContainers({ podSandboxId: p.id })).map((c) => c.id);
    expect(ps.sort()).toEqual([id, created].sort());
    // the log is read again: new output lands in the file
    await ok('exec', '-s', id, 'touch', '/tmp/go');
    const logPath = join(p.logDir, 'survivor.log');
    await until('output after the restart', async () =>
      (await readFile(logPath, 'utf8')).includes('after-restart'),
    );
    // the name stays reserved
    expect((await crictl('create', p.id, survivor, p.path)).stderr).toMatch(/AlreadyExists|reserved/);
    // an exit after the restart is noticed
    process.kill(before.info.pid, 'SIGKILL');
    await until(
      'the exit after restart',
      async () => (await inspect(id)).status.state === 'CONTAINER_EXITED',
    );
    expect((await inspect(id)).status.exitCode).toBe(137);
    await ok('rm', id);
    await ok('start', created);
    await ok('stop', '--timeout', '0', created);
    await ok('rm', created);
    expect(existsSync(join(cri.berthd.root, 'io.containerd.grpc.v1.cri', 'containers', id))).toBe(false);
    await ok('rmp', '-f', p.id);
  }, 180_000);
});
