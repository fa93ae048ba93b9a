/**
 * Failpoints (see @berth/api's failpoint): a task create that fails at any of its steps,
 * in berthd or in berth's shim, leaves nothing behind: no bundle, no shim, no runc
 * container, no mount, no container record or snapshot once ctr has cleaned up its side.
 */
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
import { canRunTasks, killLeftovers, mountsUnder, runcContainers, shimPids, waitFor } from './tasks-fixtures';

const NS = 'failpoints';
const RUNTIME = 'io.containerd.berth.v1';
const IMAGE = 'docker.io/library/busybox:berth-failpoints';
const ANNOTATION = 'io.containerd.runtime.v2.shim.failpoint.';

(canRunTasks() ? describe : describe.skip)('a task create failing at each step', () => {
  let dir: string;
  let daemon: Daemon;
  const c = (...args: string[]) => ctr(daemon.address, ['--namespace', NS, ...args]);
  const run = (id: string, ...extra: string[]) =>
    c('run', '--rm', '--runtime', RUNTIME, ...extra, IMAGE, id, 'echo', `ran ${id}`);

  beforeAll(async () => {
    dir = makeTempDir('berth-failpoints-');
    daemon = await startBerthd({
      dir,
      env: {
        BERTH_SHIM_IDLE_MS: '0',
        BERTH_FAILPOINTS:
          'runtime.create.bundle=1*error(no bundle today);runtime.create.shim=1*error(no task today)',
      },
    });
    const archive = path.join(dir, 'busybox.tar');
    writeOciLayout(archive, buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'] } }), IMAGE);
    expect((await c('images', 'import', archive)).code).toBe(0);
  });
  afterAll(async () => {
    await daemon?.dispose();
    await killLeftovers(NS, dir);
    removeDir(dir);
  });

  /** Nothing of the failed task remains once ctr has deleted its container. */
  async function expectNothingLeft(): Promise<void> {
    await waitFor('shims to exit', () => shimPids(NS).length === 0, 10_000);
    expect(runcContainers(NS)).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS))).toEqual([]);
    expect(mountsUnder(path.join(dir, 'state'))).toEqual([]);
    expect((await c('containers', 'ls', '-q')).stdout).toBe('');
    expect((await c('snapshots', 'ls')).stdout).not.toMatch(/Active/);
  }

  test.each([
    ['in berthd, once the bundle is made', 'b1', [], /no bundle today/],
    ['in berthd, once the shim is started', 'b2', [], /no task today/],
    [
      "in the shim's Create",
      's1',
      ['--annotation', `${ANNOTATION}Create=1*error(create refused)`],
      /create refused/,
    ],
  ])('%s: the error reaches the client and everything is rolled back', async (_, id, extra, message) => {
    const r = await run(id, ...extra);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
    await expectNothingLeft();
  });

  test("failing in the shim's Start leaves the task created, as containerd does, and deletable", async () => {
    const r = await run('s2', '--annotation', `${ANNOTATION}Start=1*error(start refused)`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/start refused/);
    // ctr refuses to delete a created task with a pid, on containerd as here.
    expect((await c('tasks', 'ls')).stdout).toMatch(/^s2\s+\d+\s+CREATED$/m);
    expect((await c('tasks', 'rm', '-f', 's2')).code).toBe(0);
    expect((await c('containers', 'rm', 's2')).code).toBe(0);
    await expectNothingLeft();
  });

  test('with every failpoint spent, the same run works', async () => {
    expect(await run('ok')).toMatchObject({ code: 0, stdout: 'ran ok\n' });
    await expectNothingLeft();
  });
});
