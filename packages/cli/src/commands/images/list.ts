import type { Image } from '@berth/api';
import type { CommandSpec } from '../../args';
import { binarySize, formatPlatform, imagePlatforms, imageSize } from '../../image-content';
import { type Globals, print, printJson } from '../../runtime';
import { CTR_SPACES, formatTable } from '../../tabwriter';

export const imageJson = (i: Image) => ({
  name: i.name,
  labels: i.labels,
  target: i.target,
  createdAt: i.createdAt.toISOString(),
  updatedAt: i.updatedAt.toISOString(),
});

export const listCommand: CommandSpec<Globals> = {
  name: 'list',
  aliases: ['ls'],
  summary: 'list images known to the daemon',
  argsUsage: '[<filter>...]',
  description:
    'List images, optionally matching containerd filters on name, target.digest, target.mediatype and labels.<key>.',
  flags: [{ name: 'quiet', short: 'q', type: 'bool', description: 'print only the image refs' }],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const images = await client.images.list(ctx, args);
    if (flags.quiet) {
      print(g, images.map((i) => `${i.name}\n`).join(''));
      return;
    }
    if (g.format === 'json') {
      printJson(g, images.map(imageJson));
      return;
    }
    let text = 'REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t\n';
    for (const image of images) {
      let size = 0;
      try {
        size = await imageSize(client, ctx, image.target);
      } catch (err) {
        g.io.stderr.write(
          `berth: failed calculating size for image ${image.name}: ${(err as Error).message}\n`,
        );
      }
      let platforms = '-';
      try {
        const found = [
          ...new Set((await imagePlatforms(client, ctx, image.target)).map(formatPlatform)),
        ].sort();
        if (found.length > 0) platforms = found.join(',');
      } catch (err) {
        g.io.stderr.write(
          `berth: failed resolving platform for image ${image.name}: ${(err as Error).message}\n`,
        );
      }
      const labels = Object.entries(image.labels)
        .map(([k, v]) => `${k}=${v}`)
        .sort();
      text += `${image.name}\t${image.target.mediaType}\t${image.target.digest}\t${binarySize(size)}\t${platforms}\t${labels.length ? labels.join(',') : '-'}\t\n`;
    }
    print(g, formatTable(text, CTR_SPACES));
  },
};
