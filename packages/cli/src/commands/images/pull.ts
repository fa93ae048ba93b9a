import type { Context, Descriptor } from '@berth/api';
import type { CommandSpec } from '../../args';
import { binarySize } from '../../image-content';
import {
  credentialsFunc,
  LOCAL_FLAG,
  localPipeline,
  PLATFORM_FLAG,
  parseUser,
  platformsOf,
  progressDisplay,
  pullEventToProgress,
  REGISTRY_FLAGS,
  SNAPSHOTTER_FLAG,
  saveImage,
  transferCredentials,
  transferOrLocal,
  transferPlatform,
} from '../../image-transfer';
import { type Globals, labelArgs, print, printJson } from '../../runtime';

export const pullCommand: CommandSpec<Globals> = {
  name: 'pull',
  summary: 'pull an image from a registry and unpack it',
  argsUsage: '<ref>',
  minArgs: 1,
  maxArgs: 1,
  description:
    "Pull an image into the daemon's image store and unpack it into the snapshotter. The daemon " +
    'does the work through its Transfer service (berthd); a daemon without one (containerd 1.6) ' +
    'gets a pull run by this process through its content, leases, snapshots and diff services. ' +
    'Progress shows one bar per blob on a terminal, one line per change otherwise.',
  flags: [
    ...REGISTRY_FLAGS,
    PLATFORM_FLAG,
    {
      name: 'all-platforms',
      type: 'bool',
      description: "pull content of every platform (unpack only this host's)",
    },
    SNAPSHOTTER_FLAG,
    { name: 'skip-unpack', type: 'bool', description: 'fetch the content only' },
    {
      name: 'label',
      type: 'string',
      repeatable: true,
      value: 'KEY=VALUE',
      description: 'label the image',
    },
    LOCAL_FLAG,
  ],
  async run({ path, args, flags, global: g }) {
    const ref = args[0]!;
    const { normalizeReference } = require('@berth/images') as typeof import('@berth/images');
    const name = normalizeReference(ref);
    const user = parseUser(flags.user as string | undefined, path);
    const platforms = platformsOf(flags, path);
    const allPlatforms = flags['all-platforms'] === true;
    const unpack = flags['skip-unpack'] !== true;
    const snapshotter = flags.snapshotter as string;
    const labels = labelArgs((flags.label as string[]) ?? []);
    const { client, ctx } = g.session();
    const display = progressDisplay(g);
    display?.message(`resolving ${name}`);
    let target: Descriptor | undefined;
    let failed = true;
    try {
      const { via } = await transferOrLocal(
        flags,
        async () => {
          const { RemoteTransfer } = require('@berth/client') as typeof import('@berth/client');
          await new RemoteTransfer(client).pull(ctx, name, {
            plainHttp: flags['plain-http'] === true,
            hostsDir: (flags['hosts-dir'] as string | undefined) || undefined,
            credentials: transferCredentials(user),
            labels,
            platforms: allPlatforms ? [] : platforms.map(transferPlatform),
            unpack: unpack ? { snapshotter } : false,
            onProgress: (p) => display?.handle(p),
          });
          target = (await client.images.get(ctx, name)).target;
        },
        async () => {
          target = await pullLocal(g, ctx, name, {
            plainHttp: flags['plain-http'] === true,
            hostsDir: (flags['hosts-dir'] as string | undefined) || undefined,
            credentials: credentialsFunc(user),
            platforms,
            allPlatforms,
            unpack,
            snapshotter,
            labels,
            onProgress: (e) => {
              const p = pullEventToProgress(e);
              if (p) display?.handle(p);
            },
          });
        },
      );
      failed = false;
      display?.stop();
      const secs = ((display?.elapsedMs ?? 0) / 1000).toFixed(1);
      if (g.format === 'json') {
        printJson(g, { name, target, via });
      } else {
        print(
          g,
          `pulled ${name} (${target!.digest}, ${binarySize(target!.size)} ${target!.mediaType}) in ${secs} s\n`,
        );
      }
    } finally {
      if (failed) display?.stop();
    }
  },
};

interface LocalPullOptions {
  plainHttp: boolean;
  hostsDir?: string;
  credentials: ReturnType<typeof credentialsFunc>;
  platforms: import('@berth/api').Platform[];
  allPlatforms: boolean;
  unpack: boolean;
  snapshotter: string;
  labels: Record<string, string>;
  onProgress: (e: import('@berth/images').PullEvent) => void;
}

/** The pull ctr 1.6 does itself: fetch into the daemon's content store, unpack through its Diff service. */
async function pullLocal(g: Globals, ctx: Context, name: string, o: LocalPullOptions): Promise<Descriptor> {
  const { client } = g.session();
  const { pull } = require('@berth/images') as typeof import('@berth/images');
  const p = localPipeline(client, o.snapshotter);
  const res = await pull(ctx, name, {
    content: p.content,
    leases: p.leases,
    registry: { plainHttp: o.plainHttp, hostsDir: o.hostsDir, credentials: o.credentials },
    platform: o.allPlatforms ? 'all' : o.platforms.length > 0 ? o.platforms : undefined,
    unpack: o.unpack,
    snapshotter: o.unpack ? p.snapshotter : undefined,
    snapshotterName: p.snapshotterName,
    applier: p.applier,
    labels: o.labels,
    onProgress: o.onProgress,
    saveImage: (lctx, image) => saveImage(client, lctx, { ...image, labels: o.labels }),
  });
  return res.image.target;
}
