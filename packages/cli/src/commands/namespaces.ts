import type { CommandSpec } from '../args';
import { formatLabels, type Globals, labelArgs, print, printJson, ReportedError } from '../runtime';
import { CTR_SPACES, formatTable } from '../tabwriter';

const listCommand: CommandSpec<Globals> = {
  name: 'list',
  aliases: ['ls'],
  summary: 'list namespaces',
  maxArgs: 0,
  flags: [{ name: 'quiet', short: 'q', type: 'bool', description: 'print only the namespace names' }],
  async run({ flags, global: g }) {
    const { client, ctx } = g.session();
    const namespaces = await client.namespaces.listWithLabels(ctx);
    if (flags.quiet) {
      print(g, namespaces.map((n) => `${n.name}\n`).join(''));
      return;
    }
    if (g.format === 'json') {
      printJson(g, namespaces);
      return;
    }
    let text = 'NAME\tLABELS\t\n';
    for (const n of namespaces) text += `${n.name}\t${formatLabels(n.labels)}\t\n`;
    print(g, formatTable(text, CTR_SPACES));
  },
};

const createCommand: CommandSpec<Globals> = {
  name: 'create',
  aliases: ['c'],
  summary: 'create a new namespace',
  argsUsage: '<name> [<key>=<value>...]',
  description: 'Create a new namespace with optional labels; the name must be unique.',
  minArgs: 1,
  async run({ args, global: g }) {
    const [name, ...rest] = args as [string, ...string[]];
    const labels = labelArgs(rest);
    const { client, ctx } = g.session();
    await client.namespaces.create(ctx, name, labels);
    if (g.format === 'json') printJson(g, { name, labels });
  },
};

const labelCommand: CommandSpec<Globals> = {
  name: 'label',
  summary: 'set and clear labels for a namespace',
  argsUsage: '<name> [<key>=<value>...]',
  description: 'Set and clear labels for a namespace; an empty value clears the label.',
  minArgs: 1,
  async run({ args, global: g }) {
    const [name, ...rest] = args as [string, ...string[]];
    const { client, ctx } = g.session();
    for (const [k, v] of Object.entries(labelArgs(rest))) await client.namespaces.setLabel(ctx, name, k, v);
    if (g.format === 'json') printJson(g, { name, labels: await client.namespaces.labels(ctx, name) });
  },
};

const removeCommand: CommandSpec<Globals> = {
  name: 'remove',
  aliases: ['rm'],
  summary: 'remove one or more namespaces',
  argsUsage: '<name>...',
  description:
    'Remove one or more namespaces; a namespace must be empty. Removed (or already absent) names are printed.',
  minArgs: 1,
  async run({ args, global: g }) {
    const { client, ctx } = g.session();
    const removed: string[] = [];
    let failed = false;
    for (const name of args) {
      try {
        await client.namespaces.delete(ctx, name);
      } catch (err) {
        // As ctr: a namespace that is not there is as good as removed.
        if ((err as { code?: string }).code !== 'ERR_NOT_FOUND') {
          g.io.stderr.write(`berth: unable to delete ${name}: ${(err as Error).message}\n`);
          failed = true;
          continue;
        }
      }
      removed.push(name);
      if (g.format === 'table') print(g, `${name}\n`);
    }
    if (g.format === 'json') printJson(g, removed);
    if (failed) throw new ReportedError();
  },
};

export const namespacesCommand: CommandSpec<Globals> = {
  name: 'namespaces',
  aliases: ['namespace', 'ns'],
  summary: 'manage namespaces',
  subcommands: [createCommand, listCommand, removeCommand, labelCommand],
};
