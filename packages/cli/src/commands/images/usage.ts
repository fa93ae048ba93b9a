import type { CommandSpec } from '../../args';
import { binarySize, chainId, imageConfig } from '../../image-content';
import { SNAPSHOTTER_FLAG } from '../../image-transfer';
import { type Globals, print, printJson } from '../../runtime';
import { CTR_SPACES, formatTable } from '../../tabwriter';

export const usageCommand: CommandSpec<Globals> = {
  name: 'usage',
  summary: "show the disk usage of an image's unpacked snapshots",
  argsUsage: '<ref>',
  minArgs: 1,
  maxArgs: 1,
  description:
    "For each layer of the image (this host's platform), its snapshot (chain ID) in the " +
    'snapshotter with the bytes and inodes it uses, then the total; "-" for a layer not unpacked.',
  flags: [SNAPSHOTTER_FLAG],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const snapshotter = (flags.snapshotter as string) || 'overlayfs';
    const image = await client.images.get(ctx, args[0]!);
    const { blob } = await imageConfig(client, ctx, image.target);
    const diffIds =
      (JSON.parse(blob.toString()) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? [];
    const sn = client.snapshots(snapshotter);
    const rows: Array<{ snapshot: string; size?: number; inodes?: number }> = [];
    let size = 0;
    let inodes = 0;
    for (let i = 0; i < diffIds.length; i++) {
      const key = chainId(diffIds.slice(0, i + 1));
      try {
        const u = await sn.usage(ctx, key);
        rows.push({ snapshot: key, size: u.size, inodes: u.inodes });
        size += u.size;
        inodes += u.inodes;
      } catch (e) {
        if ((e as { code?: string }).code !== 'ERR_NOT_FOUND') throw e;
        rows.push({ snapshot: key });
      }
    }
    if (g.format === 'json') {
      printJson(g, { name: image.name, snapshotter, layers: rows, size, inodes });
      return;
    }
    let text = 'SNAPSHOT\tSIZE\tINODES\t\n';
    for (const r of rows) {
      text += `${r.snapshot}\t${r.size === undefined ? '-' : binarySize(r.size)}\t${r.inodes ?? '-'}\t\n`;
    }
    text += `total\t${binarySize(size)}\t${inodes}\t\n`;
    print(g, formatTable(text, CTR_SPACES));
  },
};
