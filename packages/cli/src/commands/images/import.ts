import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Image } from '@berth/api';
import type { CommandSpec } from '../../args';
import {
  LOCAL_FLAG,
  localPipeline,
  PLATFORM_FLAG,
  platformsOf,
  progressDisplay,
  SNAPSHOTTER_FLAG,
  saveImage,
  transferOrLocal,
  transferPlatform,
} from '../../image-transfer';
import { type Globals, print, printJson } from '../../runtime';

export const importCommand: CommandSpec<Globals> = {
  name: 'import',
  summary: 'import images from an archive (OCI layout or docker save tar)',
  argsUsage: '<in>',
  minArgs: 1,
  maxArgs: 1,
  description:
    'Import the images of an OCI image layout archive or a `docker save` archive (<in>, or - for ' +
    "stdin) and unpack this host's platform. Images are named by the archive " +
    '(io.containerd.image.name, or RepoTags for docker archives); --base-name names the ones that ' +
    'carry only a tag. The daemon reads the archive through its Transfer service when it has one.',
  flags: [
    {
      name: 'base-name',
      type: 'string',
      value: 'NAME',
      description: 'base image name for tags-only entries',
    },
    {
      name: 'index-name',
      type: 'string',
      value: 'NAME',
      description: "also record the archive's whole index under this name (done by this process)",
    },
    PLATFORM_FLAG,
    { name: 'all-platforms', type: 'bool', description: 'import content of every platform' },
    SNAPSHOTTER_FLAG,
    { name: 'no-unpack', type: 'bool', description: 'do not unpack the images' },
    LOCAL_FLAG,
  ],
  async run({ path, args, flags, global: g }) {
    const input = args[0]!;
    const open = (): Readable => (input === '-' ? (g.io.stdin as Readable) : createReadStream(input));
    const platforms = platformsOf(flags, path);
    const allPlatforms = flags['all-platforms'] === true;
    const unpack = flags['no-unpack'] !== true;
    const snapshotter = flags.snapshotter as string;
    const baseName = (flags['base-name'] as string | undefined) || undefined;
    const indexName = (flags['index-name'] as string | undefined) || undefined;
    const { client, ctx } = g.session();
    const display = progressDisplay(g);
    const names: string[] = [];
    try {
      const { via } = await transferOrLocal(
        // The Transfer service has no index name: that one is done here.
        indexName ? { ...flags, local: true } : flags,
        async () => {
          const { RemoteTransfer } = require('@berth/client') as typeof import('@berth/client');
          await new RemoteTransfer(client).importArchive(ctx, open(), {
            baseName,
            platforms: platforms.map(transferPlatform),
            allPlatforms,
            unpack: unpack ? { snapshotter } : false,
            onProgress: (p) => {
              if (p.event === 'saved') names.push(p.name);
              display?.handle(p);
            },
          });
        },
        async () => {
          const images = require('@berth/images') as typeof import('@berth/images');
          const p = localPipeline(client, snapshotter);
          const platform = allPlatforms ? 'all' : platforms.length > 0 ? platforms : undefined;
          const saved: Image[] = [];
          await images.importArchive(ctx, open(), {
            content: p.content,
            leases: p.leases,
            platform,
            baseName,
            indexName,
            saveImage: async (lctx, image) => {
              const img = await saveImage(client, lctx, image);
              saved.push(img);
              names.push(img.name);
              if (!unpack || img.name === indexName) return;
              await images.unpackImage(lctx, img.target, {
                content: p.content,
                snapshotter: p.snapshotter,
                snapshotterName: p.snapshotterName,
                applier: p.applier,
                leases: p.leases,
                platform: platforms[0],
                onEvent: (e) =>
                  display?.handle({
                    event: e.status === 'started' ? 'unpacking' : 'unpacked',
                    name: `layer-${e.layer}`,
                    progress: 0,
                    total: 0,
                  }),
              });
            },
          });
        },
      );
      display?.stop();
      if (g.format === 'json') printJson(g, { images: names, via });
      else print(g, names.map((n) => `imported ${n}\n`).join(''));
    } finally {
      display?.stop();
    }
  },
};
