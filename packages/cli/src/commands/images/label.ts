import type { CommandSpec } from '../../args';
import { formatLabels, type Globals, labelArgs, print, printJson } from '../../runtime';

export const labelCommand: CommandSpec<Globals> = {
  name: 'label',
  summary: 'set and clear labels for an image',
  argsUsage: '<name> [<key>=<value>...]',
  minArgs: 1,
  description: 'Set labels (an empty value removes one) and print the labels the image then has.',
  flags: [{ name: 'replace-all', short: 'r', type: 'bool', description: 'replace all labels' }],
  async run({ args, flags, global: g }) {
    const [name, ...pairs] = args;
    const labels = labelArgs(pairs);
    const { client, ctx } = g.session();
    const current = await client.images.get(ctx, name!);
    let result = current.labels;
    if (pairs.length > 0 || flags['replace-all']) {
      const paths = flags['replace-all'] ? ['labels'] : Object.keys(labels).map((k) => `labels.${k}`);
      result = (await client.images.update(ctx, { name: name!, labels, target: current.target }, paths))
        .labels;
    }
    if (g.format === 'json') printJson(g, result);
    else print(g, `${formatLabels(result)}\n`);
  },
};
