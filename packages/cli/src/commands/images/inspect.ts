import type { CommandSpec } from '../../args';
import { binarySize, formatPlatform, imagePlatforms, imageSize } from '../../image-content';
import { type Globals, printJson } from '../../runtime';
import { imageJson } from './list';

export const inspectCommand: CommandSpec<Globals> = {
  name: 'inspect',
  summary: 'show an image record, its size and platforms',
  argsUsage: '<name>',
  minArgs: 1,
  maxArgs: 1,
  async run({ args, global: g }) {
    const { client, ctx } = g.session();
    const image = await client.images.get(ctx, args[0]!);
    const out: Record<string, unknown> = imageJson(image);
    try {
      const size = await imageSize(client, ctx, image.target);
      out.size = size;
      out.sizeText = binarySize(size);
      out.platforms = [
        ...new Set((await imagePlatforms(client, ctx, image.target)).map(formatPlatform)),
      ].sort();
    } catch (err) {
      out.contentError = (err as Error).message;
    }
    printJson(g, out);
  },
};
