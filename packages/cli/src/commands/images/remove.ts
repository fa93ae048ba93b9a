import type { CommandSpec } from '../../args';
import { type Globals, print, printJson, ReportedError } from '../../runtime';

export const removeCommand: CommandSpec<Globals> = {
  name: 'delete',
  aliases: ['del', 'remove', 'rm'],
  summary: 'remove one or more images by reference',
  argsUsage: '<ref>...',
  minArgs: 1,
  description:
    'Remove images. A ref that does not exist is reported and skipped, as ctr does; other failures make the command fail after trying every ref.',
  flags: [
    {
      name: 'sync',
      type: 'bool',
      description: 'synchronously remove the image and all associated resources (runs a garbage collection)',
    },
  ],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const removed: string[] = [];
    let failed = false;
    for (const [i, ref] of args.entries()) {
      try {
        // As ctr: one collection, after the last removal, covers them all.
        await client.images.delete(ctx, ref, { sync: flags.sync === true && i === args.length - 1 });
        removed.push(ref);
        if (g.format === 'table') print(g, `${ref}\n`);
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_NOT_FOUND') {
          g.io.stderr.write(`berth: ${ref}: image not found\n`);
          continue;
        }
        failed = true;
        g.io.stderr.write(`berth: unable to delete ${ref}: ${(err as Error).message}\n`);
      }
    }
    if (g.format === 'json') printJson(g, removed);
    if (failed) throw new ReportedError();
  },
};
