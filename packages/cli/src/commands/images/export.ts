import { createWriteStream, rmSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { CommandSpec } from '../../args';
import { UsageError } from '../../args';
import {
  LOCAL_FLAG,
  PLATFORM_FLAG,
  platformsOf,
  transferOrLocal,
  transferPlatform,
} from '../../image-transfer';
import type { Globals } from '../../runtime';

export const exportCommand: CommandSpec<Globals> = {
  name: 'export',
  summary: 'export images to an archive (OCI layout with docker manifest.json)',
  argsUsage: '<out> <ref>...',
  minArgs: 2,
  description:
    'Write the images as an OCI image layout tar to <out> (- for stdout), with the manifest.json ' +
    "that `docker load` reads, holding the content of this host's platform (or --platform, " +
    '--all-platforms). `ctr images import` and `docker load` read it.',
  flags: [
    PLATFORM_FLAG,
    { name: 'all-platforms', type: 'bool', description: 'export content of every platform' },
    { name: 'skip-manifest-json', type: 'bool', description: "leave out docker's manifest.json" },
    LOCAL_FLAG,
  ],
  async run({ path, args, flags, global: g }) {
    const [out, ...names] = args as [string, ...string[]];
    if (out === '-' && (g.io.stdout as NodeJS.WriteStream).isTTY)
      throw new UsageError('refusing to write an archive to a terminal: give a file or redirect', path);
    const platforms = platformsOf(flags, path);
    const allPlatforms = flags['all-platforms'] === true;
    const { client, ctx } = g.session();
    // Fail on a missing image before creating the file.
    const items: import('@berth/api').Image[] = [];
    for (const n of names) items.push(await client.images.get(ctx, n));
    const open = (): Writable =>
      out === '-' ? (g.io.stdout as Writable) : createWriteStream(out, { mode: 0o644 });
    try {
      await transferOrLocal(
        flags,
        async () => {
          const { RemoteTransfer } = require('@berth/client') as typeof import('@berth/client');
          await new RemoteTransfer(client).exportArchive(ctx, names, open(), {
            platforms: platforms.map(transferPlatform),
            allPlatforms,
            skipDockerManifest: flags['skip-manifest-json'] === true,
          });
        },
        async () => {
          const { exportImages } = require('@berth/images') as typeof import('@berth/images');
          await exportImages(ctx, items, open(), {
            content: client.content,
            platform: allPlatforms ? 'all' : platforms.length > 0 ? platforms : undefined,
            dockerManifest: flags['skip-manifest-json'] !== true,
          });
        },
      );
    } catch (e) {
      if (out !== '-') rmSync(out, { force: true });
      throw e;
    }
  },
};
