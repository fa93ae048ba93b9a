/**
 * A pull that fails at any of its steps (see @berth/api's failpoint) leaves no image, and
 * once berthd's garbage collector has run, no blob and no snapshot it made; the same pull
 * then works. berthd runs the pull (Transfer) and reads BERTH_FAILPOINTS.
 */
import { randomBytes } from 'node:crypto';
import {
  berth,
  buildImage,
  type Daemon,
  file,
  pushToRegistry,
  type Registry,
  registryInstalled,
  startBerthd,
  startRegistry,
} from '@berth/testkit';

const ready = registryInstalled() && process.getuid?.() === 0;
const suite = ready ? describe : describe.skip;
if (!ready) it.skip('needs docker-registry and root', () => {});

suite('a pull failing at each step', () => {
  let registry: Registry;
  let daemon: Daemon | undefined;
  let ref: string;
  const b = (...args: string[]) => berth(daemon!.address, ['-n', 'failpoints', ...args]);

  beforeAll(async () => {
    registry = await startRegistry();
    const image = buildImage({
      layers: ['busybox', [file('srv/one', randomBytes(200_000))], [file('srv/two', randomBytes(200_000))]],
    });
    await pushToRegistry(registry.url, 'fp/app', 'v1', image);
    ref = `${registry.host}/fp/app:v1`;
  }, 120_000);
  afterEach(async () => {
    await daemon?.dispose();
    daemon = undefined;
  });
  afterAll(async () => {
    await registry?.stop();
  });

  /** No image, and after a collection no blob or snapshot: nothing of the failed pull. */
  async function expectNothingLeft(): Promise<void> {
    expect((await b('images', 'ls', '-q')).stdout).toBe('');
    expect((await b('gc')).code).toBe(0);
    expect((await b('content', 'ls', '-q')).stdout).toBe('');
    expect((await b('snapshots', 'ls')).stdout.trim().split('\n').slice(1)).toEqual([]);
  }

  // Each case gets a berthd of its own: the steps of one pull run concurrently, so one
  // daemon's failpoints could not say which step of which pull fails.
  test.each([
    ['a layer is fetched', 'pull.layer.fetched=1*off->1*error(second layer lost)', /second layer lost/],
    [
      'a layer is unpacked',
      'pull.layer.unpacked=1*off->1*error(second layer would not apply)',
      /second layer would not apply/,
    ],
    ['the image record is saved', 'pull.image.save=1*error(no image today)', /no image today/],
  ])('failing after %s rolls the pull back, and the same pull then works', async (_, failpoints, message) => {
    daemon = await startBerthd({ env: { BERTH_FAILPOINTS: failpoints } });
    const r = await b('images', 'pull', '--plain-http', ref);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
    await expectNothingLeft();
    const again = await b('images', 'pull', '--plain-http', ref);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    expect((await b('images', 'ls', '-q')).stdout.trim()).toBe(ref);
  });
});
