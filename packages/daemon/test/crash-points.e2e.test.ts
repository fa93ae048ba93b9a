/**
 * berthd SIGKILLed at 20 points of its work — content ingest, pull from a loopback
 * registry, unpack, GC, a burst of metadata writes, task create, start, exec and delete,
 * with and without running containers, a shim killed along with it — and restarted on
 * the same root each time. Every time the FIRST start must succeed, every committed blob
 * must hash to its digest, every container that was running must be listed RUNNING and
 * take an exec, and the interrupted operation must complete when the client redoes it.
 *
 * Each kill waits for the operation to be visibly under way (an ingest on disk past an
 * offset behind a registry proxy that stalls the layer there, a file of the layer being
 * extracted, a runc that holds at create/start/exec/delete), never for a guessed time.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  type BuiltImage,
  buildImage,
  checkContent,
  ctr,
  type Daemon,
  diskBlobs,
  diskIngests,
  type FaultyProxy,
  file,
  listTasks,
  makeTempDir,
  pushToRegistry,
  type Registry,
  type RuncGate,
  registryInstalled,
  removeDir,
  runcGate,
  sha256,
  startBerthd,
  startFaultyProxy,
  startRegistry,
  waitUntil,
  writeOciLayout,
} from '@berth/testkit';
import { canRunTasks, isAlive, killLeftovers, shimPids } from './tasks-fixtures';

const NS = 'crash-points';
const RUNC = 'io.containerd.runc.v2';
const BERTH = 'io.containerd.berth.v1';
const BASE = 'docker.io/library/busybox:berth-crash-points';
const MiB = 1024 * 1024;

const ready = canRunTasks() && registryInstalled();
const suite = ready ? describe : describe.skip;
jest.setTimeout(90_000);
if (!ready) it.skip('needs root, runc, containerd-shim-runc-v2 and docker-registry', () => {});

suite('berthd killed at 20 points, restarted on the same root', () => {
  let dir: string;
  let daemon: Daemon | undefined;
  let registry: Registry;
  let proxy: FaultyProxy;
  let gate: RuncGate;
  let pullImage: BuiltImage;
  let unpackImage: BuiltImage;
  let lateImage: BuiltImage;
  let baseImage: BuiltImage;
  /** Containers that must be listed RUNNING after every restart. */
  const running = new Set<string>();
  /** Clients started in the background, killed with the daemon. */
  const clients: ChildProcess[] = [];
  let restarts = 0;

  const pullRef = () => `${proxy.host}/crash/pull:v1`;
  const unpackRef = () => `${proxy.host}/crash/unpack:v1`;
  const lateRef = () => `${proxy.host}/crash/late:v1`;
  const bundles = () => path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS);
  const root = () => path.join(dir, 'root');

  const c = (...args: string[]) => ctr(daemon!.address, ['-n', NS, ...args], { timeoutMs: 60_000 });
  const ok = async (...args: string[]): Promise<string> => {
    const r = await c(...args);
    if (r.code !== 0)
      throw new Error(
        `ctr ${args.join(' ')}: exit ${r.code}: ${r.stderr}\n--- berthd ---\n${daemon!.logs().slice(-3000)}`,
      );
    return r.stdout;
  };
  /** A ctr command left running in the background (it dies with the daemon); its stderr is kept. */
  const bg = (...args: string[]): ChildProcess => {
    const child = spawn('/usr/bin/ctr', ['--address', daemon!.address, '-n', NS, ...args], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    child.stdin!.on('error', () => {});
    let err = '';
    child.stderr!.on('data', (b) => {
      err += b;
    });
    bgErrors.set(child, () => `ctr ${args.join(' ')}: ${err}`);
    clients.push(child);
    return child;
  };
  const bgErrors = new Map<ChildProcess, () => string>();
  /** Waits for a kill point; a background client that gave up meanwhile fails it with its error. */
  async function waitPoint(what: string, check: () => boolean | Promise<boolean>, limitMs = 20_000) {
    await waitUntil(what, check, limitMs).catch((e: Error) => {
      const failed = clients.filter((c) => c.exitCode !== null && c.exitCode !== 0);
      throw new Error(
        `${e.message}\n${failed.map((c) => bgErrors.get(c)?.()).join('\n')}\n--- berthd ---\n${daemon!.logs().slice(-2000)}`,
      );
    });
  }
  const exited = (child: ChildProcess) =>
    new Promise<number>((r) =>
      child.exitCode !== null ? r(child.exitCode) : child.once('exit', (code) => r(code ?? -1)),
    );

  async function kill(): Promise<void> {
    await daemon!.stop('SIGKILL');
    for (const child of clients.splice(0)) {
      child.kill('SIGKILL');
      await exited(child);
    }
  }

  /** Restart, and everything a restart must give: first start, sound content, containers running. */
  async function restart(): Promise<void> {
    // startBerthd throws when the daemon exits or its socket does not answer: no retry here.
    daemon = await startBerthd({ dir, env: { PATH: `${gate.dir}:${process.env.PATH}` } });
    restarts++;
    await waitUntil('berthd to log ready', () => /berthd ready address=/.test(daemon!.logs()));
    const content = await checkContent(daemon.address, NS);
    expect([content.bad, content.unreadable]).toEqual([[], []]);
    const tasks = await listTasks(daemon.address, NS);
    for (const id of running) expect([id, tasks.get(id)]).toEqual([id, 'RUNNING']);
    const one = [...running][restarts % Math.max(running.size, 1)];
    if (one) {
      const out = await ok(
        'tasks',
        'exec',
        '--exec-id',
        `check-${restarts}`,
        one,
        '/bin/echo',
        `alive ${one}`,
      );
      expect(out).toBe(`alive ${one}\n`);
    }
  }

  /** `ctr images pull` to the end, then a check that says complete. */
  async function pullAndCheck(ref: string, layers: number): Promise<void> {
    await ok('images', 'pull', '--plain-http', ref);
    expect(await ok('images', 'check', `name==${ref}`)).toContain(`complete (${layers + 1}/${layers + 1})`);
  }

  /** A layer's ingest on disk, once it is at least `offset` bytes in. */
  const ingestAt = (digest: string, offset: number) => () =>
    diskIngests(root()).some((i) => i.ref.includes(digest.slice(7)) && i.offset >= offset);

  /** A pull stalled by the proxy `stallAt` bytes into `layer`, killed there. */
  async function killPullInLayer(ref: string, layer: string, stallAt: number, alsoCommitted?: string) {
    proxy.addFault({ method: 'GET', path: layer, fault: { kind: 'stall', bytes: stallAt }, times: 1 });
    bg('images', 'pull', '--plain-http', ref);
    await waitPoint(`the ingest of ${layer} at ${stallAt}`, ingestAt(layer, stallAt));
    if (alsoCommitted)
      await waitUntil(`${alsoCommitted} committed`, () => diskBlobs(root()).includes(alsoCommitted));
    await kill();
    proxy.clearFaults();
  }

  /** A file of the layer being extracted shows up in some snapshot: unpack is under way. */
  const extracting = (rel: string) => () => {
    const snaps = path.join(root(), 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    return (fs.existsSync(snaps) ? fs.readdirSync(snaps) : []).some((s) =>
      fs.existsSync(path.join(snaps, s, 'fs', rel)),
    );
  };

  /** `ctr run -d` a sleeping container (its shim's runc is the gate: berthd's PATH starts there). */
  const runArgs = (id: string, runtime: string) => [
    'run',
    '-d',
    '--runtime',
    runtime,
    BASE,
    id,
    'sleep',
    '1000',
  ];
  async function runSleeper(id: string, runtime = RUNC): Promise<void> {
    await ok(...runArgs(id, runtime));
    running.add(id);
  }

  /** Waits for a task to reach a status (listed by ctr). */
  const taskIs = (id: string, status: string | undefined) => async () =>
    (await listTasks(daemon!.address, NS)).get(id) === status;

  beforeAll(async () => {
    dir = makeTempDir('berth-crash-points-');
    gate = runcGate(dir);
    const random = (n: number) => randomBytes(n);
    pullImage = buildImage({
      layers: ['busybox', [file('pull/a', random(6 * MiB))], [file('pull/b', random(6 * MiB))]],
      config: { Cmd: ['/bin/sh'] },
    });
    unpackImage = buildImage({
      layers: ['busybox', [file('unpack/big', Buffer.alloc(64 * MiB, 'u'))]],
      config: { Cmd: ['/bin/sh'] },
    });
    lateImage = buildImage({
      layers: ['busybox', [file('late/a', random(4 * MiB))], [file('late/b', Buffer.alloc(64 * MiB, 'l'))]],
      config: { Cmd: ['/bin/sh'] },
    });
    registry = await startRegistry();
    proxy = await startFaultyProxy(registry);
    await pushToRegistry(registry.url, 'crash/pull', 'v1', pullImage);
    await pushToRegistry(registry.url, 'crash/unpack', 'v1', unpackImage);
    await pushToRegistry(registry.url, 'crash/late', 'v1', lateImage);
    const archive = path.join(dir, 'busybox.tar');
    baseImage = buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'] } });
    writeOciLayout(archive, baseImage, BASE);
    daemon = await startBerthd({ dir, env: { PATH: `${gate.dir}:${process.env.PATH}` } });
    await ok('images', 'import', archive);
  }, 120_000);

  // A point that failed must not leave the next one held.
  afterEach(() => gate.releaseAll());

  afterAll(async () => {
    gate?.releaseAll();
    for (const child of clients) child.kill('SIGKILL');
    await daemon?.stop('SIGKILL');
    await killLeftovers(NS, dir);
    await proxy?.close();
    await registry?.stop();
    removeDir(dir);
  });

  // ---------------------------------------------------------------- nothing running

  const data = randomBytes(24 * MiB);
  const dataDigest = sha256(data);
  const blobFile = () => path.join(dir, 'blob');

  /** `ctr content ingest` fed `upTo` bytes, killed once the store has them all. */
  async function killIngest(ref: string, upTo: number, landed = upTo): Promise<void> {
    fs.writeFileSync(blobFile(), data);
    const ingest = bg(
      'content',
      'ingest',
      '--expected-size',
      String(data.length),
      '--expected-digest',
      dataDigest,
      ref,
    );
    ingest.stdin!.write(data.subarray(0, upTo));
    await waitPoint(`ingest ${ref} at ${upTo}`, () =>
      diskIngests(root()).some((i) => i.ref.endsWith(`/${ref}`) && i.offset >= landed),
    );
    await kill();
  }
  /** Redo: ctr resumes from the offset berthd reports, seeking its (file) stdin there. */
  async function resumeIngest(ref: string): Promise<void> {
    const fd = fs.openSync(blobFile(), 'r');
    const child = spawn(
      '/usr/bin/ctr',
      [
        '--address',
        daemon!.address,
        '-n',
        NS,
        'content',
        'ingest',
        '--expected-size',
        String(data.length),
        '--expected-digest',
        dataDigest,
        ref,
      ],
      { stdio: [fd, 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (b) => {
      stderr += b;
    });
    const code = await exited(child);
    fs.closeSync(fd);
    expect([code, stderr]).toEqual([0, '']);
    expect(await ok('content', 'ls', '-q')).toContain(dataDigest);
    const check = await checkContent(daemon!.address, NS);
    expect([check.bad, check.unreadable]).toEqual([[], []]);
  }

  test('1: content ingest, 8 MiB of 24 in', async () => {
    await killIngest('ingest-1', 8 * MiB);
    await restart();
    expect(await ok('content', 'active')).toMatch(/^ingest-1\s/m);
    await resumeIngest('ingest-1');
  });

  // ctr sends whole 1 MiB chunks: the client has written 3 MiB + 100003 bytes, the store has 3 MiB.
  test('2: content ingest, 3 MiB + 100003 bytes sent (the same digest committed and removed before)', async () => {
    await c('content', 'rm', dataDigest);
    await killIngest('ingest-2', 3 * MiB + 100_003, 3 * MiB);
    await restart();
    await resumeIngest('ingest-2');
  });

  test('3: idle, stale sockets of the daemon and of a dead shim left behind', async () => {
    await kill();
    // A shim socket whose process is gone (as a shim killed with -9 leaves it).
    const stale = path.join(dir, 'state', 'stale-shim.sock');
    fs.mkdirSync(path.dirname(stale), { recursive: true });
    const { createServer } = await import('node:net');
    const server = createServer();
    await new Promise<void>((r) => server.listen(stale, r));
    // Closing unlinks it; a crash does not, so put the inode back by binding again in a child.
    await new Promise<void>((r) => server.close(() => r()));
    const child = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    await exited(child);
    expect(fs.statSync(stale).isSocket()).toBe(true);
    expect(fs.statSync(daemon!.address).isSocket()).toBe(true);
    await restart();
    expect(await ok('version')).toContain('Server:');
  });

  test('4: pull, first layer stalled 1 MiB in', async () => {
    await killPullInLayer(pullRef(), pullImage.layers[1]!.desc.digest, 1 * MiB);
    await restart();
    await pullAndCheck(pullRef(), 3);
  });

  test('5: pull, one layer committed and the other stalled 4 MiB in', async () => {
    await ok('images', 'rm', '--sync', pullRef());
    for (const l of pullImage.layers.slice(1)) await c('content', 'rm', l.desc.digest);
    await killPullInLayer(
      pullRef(),
      pullImage.layers[2]!.desc.digest,
      4 * MiB,
      pullImage.layers[1]!.desc.digest,
    );
    await restart();
    await pullAndCheck(pullRef(), 3);
  });

  test('6: unpack, a 64 MiB file of the top layer being written', async () => {
    bg('images', 'pull', '--plain-http', unpackRef());
    await waitPoint('the top layer to be extracted', extracting('unpack/big'), 60_000);
    await kill();
    await restart();
    await pullAndCheck(unpackRef(), 2);
    const r = await ok('run', '--rm', unpackRef(), 'unpacked', '/bin/sh', '-c', 'wc -c < /unpack/big');
    expect(r.trim()).toBe(String(64 * MiB));
  });

  test('7: GC after ctr images rm, killed once it started deleting blobs', async () => {
    // The killed pull's lease (24 h, as containerd's) would keep everything: a user removes it.
    for (const lease of (await ok('leases', 'ls', '-q')).split('\n').filter(Boolean))
      await ok('leases', 'rm', lease);
    const before = diskBlobs(root()).length;
    await ok('images', 'rm', unpackRef());
    await waitUntil('gc to delete a blob', () => diskBlobs(root()).length < before);
    await kill();
    await restart();
    // Whatever the collection had left is collected again; the image pulls back.
    await ok('images', 'rm', '--sync', pullRef());
    await pullAndCheck(unpackRef(), 2);
    await pullAndCheck(pullRef(), 3);
  });

  test('8: 40 metadata writes in flight (image tags, leases, labels), killed after 10 finished', async () => {
    const writes = Array.from({ length: 40 }, (_, i) =>
      i % 4 === 3
        ? bg('leases', 'create', '--id', `lease-${i}`)
        : i % 4 === 2
          ? bg('content', 'label', baseImage.manifest.digest, `label-${i}=x`)
          : bg('images', 'tag', BASE, `docker.io/library/tag:${i}`),
    );
    let done = 0;
    for (const w of writes) void exited(w).then((code) => code === 0 && done++);
    await waitUntil('10 writes to finish', () => done >= 10);
    await kill();
    await restart();
    // Each write is there whole or not at all; redoing every one completes the set.
    for (let i = 0; i < 40; i++) {
      if (i % 4 === 3) {
        const r = await c('leases', 'create', '--id', `lease-${i}`);
        expect([i, r.code === 0 || /already exists/.test(r.stderr)]).toEqual([i, true]);
      } else if (i % 4 === 2) await ok('content', 'label', baseImage.manifest.digest, `label-${i}=x`);
      else await ok('images', 'tag', '--force', BASE, `docker.io/library/tag:${i}`);
    }
    const tags = (await ok('images', 'ls', '-q'))
      .split('\n')
      .filter((l) => l.startsWith('docker.io/library/tag:'));
    expect(tags).toHaveLength(20);
    expect((await ok('leases', 'ls', '-q')).split('\n').filter((l) => l.startsWith('lease-'))).toHaveLength(
      10,
    );
    expect(await ok('content', 'ls', `digest==${baseImage.manifest.digest}`)).toMatch(/label-38=x/);
    for (let i = 3; i < 40; i += 4) await ok('leases', 'rm', `lease-${i}`);
  });

  // ---------------------------------------------------------------- with running containers

  test('9: idle with containers running under both shims', async () => {
    await runSleeper('keep-runc', RUNC);
    await runSleeper('keep-berth', BERTH);
    await kill();
    await restart();
  });

  /**
   * Redo an interrupted task: whatever is left of it (nothing, a CREATED or STOPPED task)
   * is removed and the task started again, as a user would; it must then run.
   */
  async function redoTask(id: string): Promise<string | undefined> {
    const left = (await listTasks(daemon!.address, NS)).get(id);
    if (left !== 'RUNNING') {
      if (left !== undefined) await ok('tasks', 'rm', '-f', id);
      await ok('tasks', 'start', '-d', id);
    }
    running.add(id);
    expect((await listTasks(daemon!.address, NS)).get(id)).toBe('RUNNING');
    return left;
  }

  test('10: task create held in runc create through the restart (containerd-shim-runc-v2)', async () => {
    gate.hold('create', 'create-runc');
    bg(...runArgs('create-runc', RUNC));
    await waitPoint('runc create to be held', () => gate.entered('create'));
    await kill();
    await restart();
    // The shim holds no task yet: berthd reaps shim and bundle, says so, and the task can be created again.
    await waitUntil('the half-created task to go', () => !fs.existsSync(path.join(bundles(), 'create-runc')));
    expect(daemon!.logs()).toMatch(/removing a task left behind by a crash.*id=create-runc/);
    gate.abort('create');
    expect(await redoTask('create-runc')).toBeUndefined();
  });

  test("11: task create held in runc create through the restart (berth's shim)", async () => {
    gate.hold('create', 'create-berth');
    bg(...runArgs('create-berth', BERTH));
    await waitPoint('runc create to be held', () => gate.entered('create'));
    await kill();
    await restart();
    gate.abort('create');
    await waitUntil(
      'the create to fail',
      async () => (await listTasks(daemon!.address, NS)).get('create-berth') !== 'CREATED',
      5000,
    ).catch(() => {});
    await redoTask('create-berth');
  });

  // containerd's runc shim cancels runc start when berthd's connection drops: the task stays CREATED.
  test('12: task start held in runc start, released while berthd is down', async () => {
    gate.hold('start', 'start-down');
    bg(...runArgs('start-down', RUNC));
    await waitPoint('runc start to be held', () => gate.entered('start'));
    await kill();
    gate.release('start');
    await restart();
    expect(['CREATED', 'RUNNING']).toContain((await listTasks(daemon!.address, NS)).get('start-down'));
    await redoTask('start-down');
  });

  // berth's shim finishes a start whose caller went away: the task runs.
  test('13: task start held in runc start, released after the restart', async () => {
    gate.hold('start', 'start-up');
    bg(...runArgs('start-up', BERTH));
    await waitPoint('runc start to be held', () => gate.entered('start'));
    await kill();
    await restart();
    gate.release('start');
    await waitUntil('start-up to run', taskIs('start-up', 'RUNNING'));
    running.add('start-up');
    expect(await ok('tasks', 'exec', '--exec-id', 'after-start', 'start-up', '/bin/echo', 'up')).toBe('up\n');
  });

  test('14: exec held in runc exec', async () => {
    gate.hold('exec', 'start-down');
    bg('tasks', 'exec', '--exec-id', 'held', 'start-down', '/bin/true');
    await waitPoint('runc exec to be held', () => gate.entered('exec'));
    await kill();
    await restart();
    gate.release('exec');
    expect(await ok('tasks', 'exec', '--exec-id', 'again', 'start-down', '/bin/echo', 'again')).toBe(
      'again\n',
    );
  });

  test('15: task delete held in runc delete', async () => {
    await runSleeper('doomed', BERTH);
    await ok('tasks', 'kill', '-s', 'SIGKILL', 'doomed');
    running.delete('doomed');
    await waitUntil('doomed to stop', taskIs('doomed', 'STOPPED'));
    gate.hold('delete', 'doomed');
    bg('tasks', 'rm', 'doomed');
    await waitPoint('runc delete to be held', () => gate.entered('delete'));
    await kill();
    await restart();
    gate.release('delete');
    // Redo the delete: gone already, or deleted now; then the container goes with its bundle.
    const rm = await c('tasks', 'rm', 'doomed');
    expect([rm.code, rm.stderr]).toEqual(rm.code === 0 ? [0, ''] : [1, expect.stringMatching(/not found/)]);
    await ok('containers', 'rm', 'doomed');
    await waitUntil('its bundle to go', () => !fs.existsSync(path.join(bundles(), 'doomed')));
    expect((await listTasks(daemon!.address, NS)).has('doomed')).toBe(false);
  });

  test('16: a bundle whose shim was killed too', async () => {
    await runSleeper('shimless', RUNC);
    const bundle = path.join(bundles(), 'shimless');
    const initPid = Number(fs.readFileSync(path.join(bundle, 'init.pid'), 'utf8'));
    const shimPid = shimPids(NS).find((pid) =>
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes('-id shimless '),
    )!;
    expect(shimPid).toBeGreaterThan(0);
    running.delete('shimless');
    await kill();
    process.kill(shimPid, 'SIGKILL');
    await waitUntil('the shim to die', () => !isAlive(shimPid));
    await restart();
    // Its container is taken down with the dead shim's bundle; the task reads STOPPED
    // (berthd keeps a dead shim's task until deleted, so its exit can be read) or is gone.
    await waitUntil('the orphaned container to be killed', () => !isAlive(initPid));
    expect(['STOPPED', undefined]).toContain((await listTasks(daemon!.address, NS)).get('shimless'));
    expect(fs.existsSync(bundle)).toBe(false);
    await redoTask('shimless');
  });

  test('17: three ctr run -d in flight, killed once the first bundle exists', async () => {
    const ids = ['flight-1', 'flight-2', 'flight-3'];
    for (const [i, id] of ids.entries()) bg(...runArgs(id, i === 1 ? BERTH : RUNC));
    await waitPoint('a bundle', () => ids.some((id) => fs.existsSync(path.join(bundles(), id))));
    await kill();
    await restart();
    const tasks = await listTasks(daemon!.address, NS);
    for (const [i, id] of ids.entries()) {
      if (tasks.get(id) === 'RUNNING') {
        running.add(id);
        continue;
      }
      // Not running: redo the run from whatever is left (a container record, a stopped task).
      if (tasks.has(id)) await ok('tasks', 'rm', '-f', id);
      const exists = (await ok('containers', 'ls', '-q')).split('\n').includes(id);
      if (exists) await ok('tasks', 'start', '-d', id);
      else {
        // Killed between the snapshot and the container record: ctr's run made the one, not the other.
        await c('snapshots', 'rm', id);
        await ok(...runArgs(id, i === 1 ? BERTH : RUNC));
      }
      running.add(id);
    }
    const after = await listTasks(daemon!.address, NS);
    for (const id of ids) expect([id, after.get(id)]).toEqual([id, 'RUNNING']);
  });

  test('18: pull while containers run, a layer stalled 2 MiB in', async () => {
    await killPullInLayer(lateRef(), lateImage.layers[1]!.desc.digest, 2 * MiB);
    await restart();
    await pullAndCheck(lateRef(), 3);
  });

  test('19: unpack while containers run, GC racing it from an images rm', async () => {
    // Fetched but not unpacked: the pull below goes straight to unpacking.
    await ok('images', 'rm', '--sync', lateRef());
    await ok('content', 'fetch', '--plain-http', lateRef());
    await ok('images', 'rm', pullRef());
    bg('images', 'pull', '--plain-http', lateRef());
    await waitPoint('the top layer to be extracted', extracting('late/b'), 60_000);
    await kill();
    await restart();
    await pullAndCheck(lateRef(), 3);
    await pullAndCheck(pullRef(), 3);
  });

  test('20: ingest and metadata writes in flight while containers run', async () => {
    await c('content', 'rm', dataDigest);
    const tags = Array.from({ length: 12 }, (_, i) =>
      bg('images', 'tag', '--force', BASE, `docker.io/library/late:${i}`),
    );
    await killIngest('ingest-20', 5 * MiB + 7, 5 * MiB);
    for (const t of tags) t.kill('SIGKILL');
    await restart();
    await resumeIngest('ingest-20');
    for (let i = 0; i < 12; i++) await ok('images', 'tag', '--force', BASE, `docker.io/library/late:${i}`);
  });

  test('after all that, deleting everything leaves nothing behind', async () => {
    expect(restarts).toBe(20);
    for (const id of running) {
      await ok('tasks', 'kill', '-s', 'SIGKILL', id);
    }
    for (const id of running) {
      await waitUntil(`${id} to stop`, taskIs(id, 'STOPPED'));
      await ok('tasks', 'rm', id);
    }
    for (const id of (await ok('containers', 'ls', '-q')).split('\n').filter(Boolean))
      await ok('containers', 'rm', id);
    running.clear();
    await waitUntil('every shim to exit', () => shimPids(NS).length === 0);
    expect(fs.readdirSync(bundles())).toEqual([]);
    expect(await killLeftovers(NS, dir)).toEqual({ shims: [], containers: [], mounts: [] });
  });
});
