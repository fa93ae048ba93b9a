import { NotFoundError, UnavailableError } from '@berth/api';
import type { CriService } from '../src';
import { nullLog, type PullOptions } from '../src/deps';
import { ImageManager } from '../src/image/service';

/** A puller that records its calls and fails each pull when released (no registry needed). */
function gatedPuller(fail: () => Error) {
  const calls: Array<{ reference: string; opts: PullOptions }> = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  return {
    calls,
    release: () => release(),
    pull: async (_ctx: unknown, reference: string, opts: PullOptions) => {
      calls.push({ reference, opts });
      await gate;
      throw fail();
    },
  };
}

function manager(puller: ReturnType<typeof gatedPuller>): ImageManager {
  const cri = {
    deps: { puller, log: nullLog },
    config: { snapshotter: 'overlayfs', registryConfigPath: '/etc/certs.d' },
  } as unknown as CriService;
  return new ImageManager(cri);
}

const req = (image: string, username = '') => ({
  image: { image, annotations: {} },
  auth: username
    ? { username, password: 'p', auth: '', serverAddress: '', identityToken: '', registryToken: '' }
    : undefined,
  sandboxConfig: undefined,
});

describe('PullImage', () => {
  it('pulls one reference once for concurrent requests, spelled differently, and answers each the outcome', async () => {
    const puller = gatedPuller(() => new NotFoundError('docker.io/library/busybox:latest: not found'));
    const m = manager(puller);
    const pulls = [m.pullImage({}, req('busybox')), m.pullImage({}, req('docker.io/library/busybox'))];
    const other = m.pullImage({}, req('127.0.0.1:5000/a:v2'));
    await new Promise((r) => setImmediate(r));
    puller.release();
    for (const p of pulls)
      await expect(p).rejects.toThrow(
        'failed to pull and unpack image "docker.io/library/busybox:latest": docker.io/library/busybox:latest: not found',
      );
    await expect(other).rejects.toBeInstanceOf(NotFoundError);
    expect(puller.calls.map((c) => c.reference)).toEqual([
      'docker.io/library/busybox:latest',
      '127.0.0.1:5000/a:v2',
    ]);
    // Into the configured snapshotter, through the hosts.toml directory, as a managed record.
    expect(puller.calls[0]!.opts).toMatchObject({
      snapshotter: 'overlayfs',
      hostsDir: '/etc/certs.d',
      name: 'docker.io/library/busybox:latest',
      labels: { 'io.cri-containerd.image': 'managed' },
    });
    // A settled pull is forgotten: the next request pulls again.
    await expect(m.pullImage({}, req('busybox:latest'))).rejects.toBeInstanceOf(NotFoundError);
    expect(puller.calls).toHaveLength(3);
  });

  it('does not share a pull between requests with different credentials', async () => {
    const puller = gatedPuller(() => new UnavailableError('registry down'));
    const m = manager(puller);
    const a = m.pullImage({}, req('busybox', 'alice'));
    const b = m.pullImage({}, req('docker.io/library/busybox:latest', 'bob'));
    await new Promise((r) => setImmediate(r));
    puller.release();
    await expect(a).rejects.toBeInstanceOf(UnavailableError);
    await expect(b).rejects.toBeInstanceOf(UnavailableError);
    expect(puller.calls).toHaveLength(2);
    await expect(puller.calls[0]!.opts.credentials!('docker.io')).resolves.toEqual({
      username: 'alice',
      password: 'p',
    });
  });

  it('refuses a reference that is not one as InvalidArgument naming it, before any pull', async () => {
    const puller = gatedPuller(() => new Error('unreached'));
    await expect(manager(puller).pullImage({}, req('Not/Valid'))).rejects.toThrow(
      'invalid reference "Not/Valid"',
    );
    expect(puller.calls).toHaveLength(0);
  });
});
