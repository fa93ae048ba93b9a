import type { Descriptor } from '@berth/api';
import type { CommandSpec } from '../../args';
import { UsageError } from '../../args';
import { binarySize } from '../../image-content';
import {
  credentialsFunc,
  LOCAL_FLAG,
  PLATFORM_FLAG,
  parseUser,
  platformsOf,
  progressDisplay,
  REGISTRY_FLAGS,
  transferCredentials,
  transferOrLocal,
  transferPlatform,
} from '../../image-transfer';
import { type Globals, print, printJson } from '../../runtime';

export const pushCommand: CommandSpec<Globals> = {
  name: 'push',
  summary: 'push an image to a registry',
  argsUsage: '<remote> [<local>]',
  minArgs: 1,
  maxArgs: 2,
  description:
    'Push the image <local> (default: <remote>) to the registry reference <remote>: blobs the ' +
    'registry has are skipped or mounted from another repository, the manifest goes last. With ' +
    "--platform, that platform's manifest is pushed instead of the whole index (as ctr).",
  flags: [...REGISTRY_FLAGS, PLATFORM_FLAG, LOCAL_FLAG],
  async run({ path, args, flags, global: g }) {
    const images = require('@berth/images') as typeof import('@berth/images');
    const remote = images.normalizeReference(args[0]!);
    const local = args[1] ?? args[0]!;
    const user = parseUser(flags.user as string | undefined, path);
    const platforms = platformsOf(flags, path);
    if (platforms.length > 1) throw new UsageError('--platform: push takes one platform', path);
    const { client, ctx } = g.session();
    const display = progressDisplay(g);
    let target: Descriptor | undefined;
    try {
      const { via } = await transferOrLocal(
        flags,
        async () => {
          const { RemoteTransfer } = require('@berth/client') as typeof import('@berth/client');
          await new RemoteTransfer(client).push(ctx, local, remote, {
            plainHttp: flags['plain-http'] === true,
            hostsDir: (flags['hosts-dir'] as string | undefined) || undefined,
            credentials: transferCredentials(user),
            platforms: platforms.map(transferPlatform),
            onProgress: (p) => display?.handle(p),
          });
          const image = await client.images.get(ctx, local);
          target = platforms[0]
            ? await images.manifestForPlatform(ctx, client.content, image.target, platforms[0])
            : image.target;
        },
        async () => {
          const image = await client.images.get(ctx, local);
          target = platforms[0]
            ? await images.manifestForPlatform(ctx, client.content, image.target, platforms[0])
            : image.target;
          await images.push(ctx, remote, target, {
            content: client.content,
            registry: {
              plainHttp: flags['plain-http'] === true,
              hostsDir: (flags['hosts-dir'] as string | undefined) || undefined,
              credentials: credentialsFunc(user),
            },
            onProgress: (e) =>
              display?.handle({
                event: e.status === 'done' ? 'complete' : e.status === 'exists' ? 'already exists' : e.status,
                name: images.ingestRef({ mediaType: e.mediaType, digest: e.digest }),
                progress: e.offset,
                total: e.total,
              }),
          });
        },
      );
      display?.stop();
      if (g.format === 'json') printJson(g, { name: remote, local, target, via });
      else
        print(
          g,
          `pushed ${remote} (${target!.digest}, ${binarySize(target!.size)}) in ${((display?.elapsedMs ?? 0) / 1000).toFixed(1)} s\n`,
        );
    } finally {
      display?.stop();
    }
  },
};
