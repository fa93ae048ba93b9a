/**
 * berthd killed while a task is being created leaves a shim that holds no task (its create
 * was cut off) for a container the client will delete: containerd leaves such shims and
 * bundles running forever. berthd's next start reaps them, says so in its log, and never
 * touches a shim serving a real task.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  buildImage,
  ctr,
  type Daemon,
  makeTempDir,
  removeDir,
  startBerthd,
  writeOciLayout,
} from '@berth/testkit';
import { canRunTasks, isAlive, killLeftovers, runcContainers, shimPids, waitFor } from './tasks-fixtures';

const NS = 'crash-leaks';
const RUNTIME = 'io.containerd.runc.v2';
const IMAGE = 'docker.io/library/busybox:berth-crash-leaks';

(canRunTasks() ? describe : describe.skip)('berthd killed during Tasks.Create', () => {
  let dir: string;
  let daemon: Daemon | undefined;
  let running: ChildProcess | undefined;
  let hangPid: number | undefined;
  const c = (...args: string[]) => ctr(daemon!.address, ['--namespace', NS, ...args]);

  beforeAll(() => {
    dir = makeTempDir('berth-crash-leaks-');
  });
  afterAll(async () => {
    running?.kill('SIGKILL');
    if (hangPid !== undefined && isAlive(hangPid)) process.kill(hangPid, 'SIGKILL');
    await daemon?.stop('SIGKILL');
    await killLeftovers(NS, dir);
    removeDir(dir);
  });

  test('the next start removes the half-created task; the running container stays', async () => {
    // A runc that hangs in `create` (and says so): berthd is killed while the shim waits on it.
    const marker = path.join(dir, 'create-started');
    const hangingRunc = path.join(dir, 'hanging-runc');
    fs.writeFileSync(
      hangingRunc,
      `#!/bin/sh\nfor a in "$@"; do\n  if [ "$a" = create ]; then echo $$ > ${marker}; exec sleep 600; fi\ndone\nexec runc "$@"\n`,
      { mode: 0o755 },
    );
    const archive = path.join(dir, 'busybox.tar');
    writeOciLayout(archive, buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'] } }), IMAGE);

    daemon = await startBerthd({ dir });
    expect((await c('images', 'import', archive)).code).toBe(0);
    expect((await c('run', '-d', '--runtime', RUNTIME, IMAGE, 'keep', 'sleep', '1000')).code).toBe(0);
    running = spawn(
      '/usr/bin/ctr',
      [
        '--address',
        daemon.address,
        '--namespace',
        NS,
        'run',
        '-d',
        '--runtime',
        RUNTIME,
        '--runc-binary',
        hangingRunc,
        IMAGE,
        'half',
        'sleep',
        '1000',
      ],
      { stdio: 'ignore' },
    );
    await waitFor('the shim to run create', () => fs.existsSync(marker));
    hangPid = Number(fs.readFileSync(marker, 'utf8'));
    await daemon.stop('SIGKILL');
    running.kill('SIGKILL');
    const bundles = path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS);
    expect(fs.readdirSync(bundles).sort()).toEqual(['half', 'keep']);
    expect(shimPids(NS)).toHaveLength(2);

    daemon = await startBerthd({ dir });
    await waitFor('the half-created task to be reaped', () => !fs.existsSync(path.join(bundles, 'half')));
    expect(daemon.logs()).toMatch(
      /removing a task left behind by a crash.*id=half.*its create never finished/,
    );
    await waitFor('its shim to exit', () => shimPids(NS).length === 1, 10_000);
    expect(runcContainers(NS)).toEqual(['keep']);
    const tasks = (await c('tasks', 'ls')).stdout;
    expect(tasks).toMatch(/^keep\s+\d+\s+RUNNING$/m);
    expect(tasks).not.toContain('half');

    // The client deletes what it sees: afterwards nothing of either container is left.
    expect((await c('containers', 'rm', 'half')).code).toBe(0);
    expect((await c('tasks', 'kill', '-s', 'SIGKILL', 'keep')).code).toBe(0);
    await waitFor('keep to stop', async () => (await c('tasks', 'ls')).stdout.includes('STOPPED'));
    expect((await c('tasks', 'rm', 'keep')).code).toBe(0);
    expect((await c('containers', 'rm', 'keep')).code).toBe(0);
    await waitFor('every shim to exit', () => shimPids(NS).length === 0, 10_000);
    expect(fs.readdirSync(bundles)).toEqual([]);
    expect(await killLeftovers(NS, dir)).toEqual({ shims: [], containers: [], mounts: [] });
  }, 120_000);
});
