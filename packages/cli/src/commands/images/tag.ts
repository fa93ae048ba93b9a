import type { CommandSpec } from '../../args';
import { type Globals, print } from '../../runtime';

export const tagCommand: CommandSpec<Globals> = {
  name: 'tag',
  summary: 'tag an image',
  argsUsage: '<source_ref> <target_ref>...',
  minArgs: 2,
  description: 'Create more names for the image <source_ref> points at (same target, same labels).',
  flags: [
    {
      name: 'force',
      type: 'bool',
      description: 'replace a target_ref that already exists',
    },
  ],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const [source, ...targets] = args;
    const image = await client.images.get(ctx, source!);
    for (const name of targets) {
      const tagged = { name, labels: image.labels, target: image.target };
      try {
        await client.images.create(ctx, tagged);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ERR_ALREADY_EXISTS' || !flags.force) throw err;
        await client.images.delete(ctx, name);
        await client.images.create(ctx, tagged);
      }
      print(g, `${name}\n`);
    }
  },
};
