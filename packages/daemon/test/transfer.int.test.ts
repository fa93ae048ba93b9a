/**
 * containerd 2's Transfer and Streaming services on berthd, driven by @berth/client's
 * RemoteTransfer as any containerd 2 client drives them: a pull from a registry into the
 * image store (unpacked under chain IDs, progress on a stream), credentials asked over an
 * auth stream, push, and archives streamed both ways with window updates.
 */
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Context } from '@berth/api';
import { type Client, connect, RemoteTransfer, type TransferProgress } from '@berth/client';
import { chainIds } from '@berth/images';
import {
  type BuiltImage,
  buildImage,
  type Daemon,
  file,
  makeTempDir,
  pushToRegistry,
  type Registry,
  removeDir,
  startBerthd,
  startRegistry,
} from '@berth/testkit';

const ctx: Context = { namespace: 'transfer-test' };
let registry: Registry;
let authRegistry: Registry;
let daemon: Daemon;
let client: Client;
let transfer: RemoteTransfer;
let tmp: string;
let image: BuiltImage;

beforeAll(async () => {
  tmp = makeTempDir('berth-transfer-');
  [registry, authRegistry, daemon] = await Promise.all([
    startRegistry(),
    startRegistry({ htpasswd: { alice: 's3cret' } }),
    startBerthd(),
  ]);
  image = buildImage({
    layers: [[file('etc/motd', 'hello\n')], [file('usr/share/doc', 'x'.repeat(50_000))]],
    extraPlatforms: [{ os: 'linux', architecture: 'arm64', variant: 'v8' }],
  });
  await pushToRegistry(registry.url, 'app/multi', 'v1', image);
  await pushToRegistry(authRegistry.url, 'app/private', 'v1', image, {
    username: 'alice',
    password: 's3cret',
  });
  client = connect(daemon.address);
  transfer = new RemoteTransfer(client);
}, 60_000);

afterAll(async () => {
  client?.close();
  await Promise.all([daemon?.dispose(), registry?.stop(), authRegistry?.stop()]);
  if (tmp) removeDir(tmp);
});

const topChain = (img: BuiltImage) => chainIds(img.layers.map((l) => l.diffId)).at(-1)!;

describe('pull through the Transfer service', () => {
  const ref = () => `${registry.host}/app/multi:v1`;

  it('stores and unpacks the host platform of an index, reporting progress per blob', async () => {
    const events: TransferProgress[] = [];
    await transfer.pull(ctx, ref(), { plainHttp: true, onProgress: (p) => events.push(p) });
    const img = await client.images.get(ctx, ref());
    expect(img.target).toMatchObject({ digest: image.target.digest, mediaType: image.target.mediaType });
    // Only linux/amd64 is fetched: the arm64 manifest is not in the store.
    const arm = image.manifests.find((m) => m.platform?.architecture === 'arm64')!;
    await expect(client.content.info(ctx, arm.digest)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    for (const l of image.layers)
      expect((await client.content.info(ctx, l.desc.digest)).size).toBe(l.desc.size);
    const sn = await client.snapshots('overlayfs').stat(ctx, topChain(image));
    expect(sn.kind).toBe('committed');
    const config = await client.content.info(ctx, image.config.digest);
    expect(config.labels['containerd.io/gc.ref.snapshot.overlayfs']).toBe(topChain(image));

    const names = (e: string) => new Set(events.filter((p) => p.event === e).map((p) => p.name));
    for (const l of image.layers) {
      expect(names('waiting').has(`layer-${l.desc.digest}`)).toBe(true);
      expect(names('complete').has(`layer-${l.desc.digest}`)).toBe(true);
      expect(names('unpacked').has(`layer-${l.desc.digest}`)).toBe(true);
    }
    expect(names('saved')).toEqual(new Set([ref()]));
    expect(events.at(-1)?.event).toBe(`Completed pull from OCI Registry (${ref()})`);
  });

  it('a second pull finds everything there', async () => {
    const events: TransferProgress[] = [];
    await transfer.pull(ctx, ref(), { plainHttp: true, onProgress: (p) => events.push(p) });
    const downloaded = events.filter((p) => p.event === 'downloading' && p.name.startsWith('layer-'));
    expect(downloaded).toEqual([]);
  });

  it('fetches another platform without unpacking it when asked', async () => {
    const name = 'arm/only:v1';
    await transfer.pull(ctx, ref(), {
      plainHttp: true,
      name,
      platforms: [{ os: 'linux', architecture: 'arm64', variant: 'v8' }],
      unpack: false,
    });
    const arm = image.manifests.find((m) => m.platform?.architecture === 'arm64')!;
    expect((await client.content.info(ctx, arm.digest)).size).toBe(arm.size);
    expect((await client.images.get(ctx, name)).target.digest).toBe(image.target.digest);
  });

  it('fails clearly for a missing tag, storing no image', async () => {
    await expect(
      transfer.pull(ctx, `${registry.host}/app/multi:nope`, { plainHttp: true }),
    ).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
      message: expect.stringContaining('app/multi:nope'),
    });
    await expect(client.images.get(ctx, `${registry.host}/app/multi:nope`)).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
  });
});

describe('credentials over the auth stream', () => {
  const ref = () => `${authRegistry.host}/app/private:v1`;

  it('asks the client for the host and uses the answer', async () => {
    const asked: string[] = [];
    await transfer.pull(ctx, ref(), {
      plainHttp: true,
      credentials: async (host) => {
        asked.push(host);
        return { username: 'alice', secret: 's3cret' };
      },
    });
    expect(asked).toContain(authRegistry.host);
    expect((await client.images.get(ctx, ref())).target.digest).toBe(image.target.digest);
  });

  it('refuses without credentials or with wrong ones, and stores nothing', async () => {
    const name = 'private/denied:v1';
    await expect(transfer.pull(ctx, ref(), { plainHttp: true, name })).rejects.toMatchObject({
      code: 'ERR_PERMISSION_DENIED',
    });
    await expect(
      transfer.pull(ctx, ref(), {
        plainHttp: true,
        name,
        credentials: async () => ({ username: 'alice', secret: 'wrong' }),
      }),
    ).rejects.toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
    await expect(client.images.get(ctx, name)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });
});

describe('push, export and import through the Transfer service', () => {
  const src = () => `${registry.host}/app/multi:v1`;

  it('pushes the host platform of an image and pulls it back', async () => {
    const pushed = `${registry.host}/app/pushed:v2`;
    await transfer.push(ctx, src(), pushed, {
      plainHttp: true,
      platforms: [{ os: 'linux', architecture: 'amd64' }],
    });
    const res = await fetch(`${registry.url}/v2/app/pushed/manifests/v2`, {
      headers: { accept: image.manifest.mediaType },
    });
    expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
  });

  it('exports an archive that imports into another namespace, unpacked', async () => {
    const path = join(tmp, 'export.tar');
    await transfer.exportArchive(ctx, [src()], createWriteStream(path));
    expect(statSync(path).size).toBeGreaterThan(image.layers.reduce((n, l) => n + l.desc.size, 0));
    const other: Context = { namespace: 'transfer-import' };
    await expect(client.content.info(other, image.layers[1]!.desc.digest)).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
    const events: TransferProgress[] = [];
    await transfer.importArchive(other, createReadStream(path), {
      unpack: {},
      onProgress: (p) => events.push(p),
    });
    expect((await client.images.get(other, src())).target.digest).toBe(image.target.digest);
    expect((await client.snapshots('overlayfs').stat(other, topChain(image))).kind).toBe('committed');
    expect(events.some((e) => e.event === 'saved' && e.name === src())).toBe(true);
  });

  it('refuses an archive that is not one', async () => {
    await expect(
      transfer.importArchive(ctx, [Buffer.from('this is not a tar archive at all'.repeat(40))]),
    ).rejects.toMatchObject({ code: expect.stringMatching(/ERR_INVALID_ARGUMENT|ERR_FAILED_PRECONDITION/) });
  });

  it('answers NotImplemented for a pairing it does not know and NotFound for an unknown stream', async () => {
    const { encodeAny } = await import('@berth/api');
    const reg = encodeAny('containerd.types.transfer.OCIRegistry', { reference: src() });
    await expect(transfer.transfer(ctx, reg, reg)).rejects.toMatchObject({ code: 'ERR_NOT_IMPLEMENTED' });
    const exp = encodeAny('containerd.types.transfer.ImageExportStream', { stream: 'no-such-stream' });
    const store = encodeAny('containerd.types.transfer.ImageStore', { name: 'arm/only:v1' });
    await expect(transfer.transfer(ctx, store, exp)).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
      message: expect.stringContaining('no-such-stream'),
    });
  });
});
