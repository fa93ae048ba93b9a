import type { PluginInfo, PluginPlatform } from '@berth/client';
import type { CommandSpec } from '../args';
import { type Globals, print, printJson } from '../runtime';
import { CTR_PLUGINS, formatTable } from '../tabwriter';

/** Go's grpc codes.Code names, as ctr prints a plugin's init error. */
const GRPC_CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

export function pluginStatus(p: PluginInfo): 'ok' | 'skip' | 'error' {
  if (!p.initErr) return 'ok';
  return p.initErr.message.includes('skip plugin') ? 'skip' : 'error';
}

/** os/arch[/variant], deduplicated and sorted, as containerd's platforms.Format. */
export function prettyPlatforms(platforms: readonly PluginPlatform[]): string {
  const set = new Set(
    platforms.map((p) => (p.os ? [p.os, p.architecture, p.variant].filter(Boolean).join('/') : 'unknown')),
  );
  return [...set].sort().join(',');
}

function detailed(plugins: readonly PluginInfo[]): string {
  let text = '';
  plugins.forEach((p, i) => {
    if (i > 0) text += '\t\t\t\n';
    text += `Type:\t ${p.type}\n`;
    text += `ID:\t ${p.id}\n`;
    if (p.requires.length > 0) {
      text += 'Requires:\t\n';
      for (const r of p.requires) text += `\t ${r}\n`;
    }
    if (p.platforms.length > 0) text += `Platforms:\t ${prettyPlatforms(p.platforms)}\n`;
    const exports = Object.entries(p.exports).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (exports.length > 0) {
      text += 'Exports:\t\n';
      for (const [k, v] of exports) text += `\t ${k} \t ${v}\n`;
    }
    if (p.capabilities.length > 0) text += `Capabilities:\t ${p.capabilities.join(',')}\n`;
    if (p.initErr) {
      text += 'Error:\t\n';
      text += `\t Code:\t ${GRPC_CODE_NAMES[p.initErr.code] ?? `Code(${p.initErr.code})`}\n`;
      text += `\t Message:\t ${p.initErr.message}\n`;
    }
  });
  return formatTable(text, CTR_PLUGINS);
}

const listCommand: CommandSpec<Globals> = {
  name: 'list',
  aliases: ['ls'],
  summary: 'list the daemon plugins',
  argsUsage: '[<filter>...]',
  description:
    'List the daemon plugins, optionally matching containerd filters (e.g. type==io.containerd.content.v1).',
  flags: [
    { name: 'quiet', short: 'q', type: 'bool', description: 'print only the plugin ids' },
    {
      name: 'detailed',
      short: 'd',
      type: 'bool',
      description: 'print detailed information about each plugin',
    },
  ],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const plugins = await client.plugins(args, ctx);
    if (flags.quiet) {
      print(g, plugins.map((p) => `${p.id}\n`).join(''));
      return;
    }
    if (g.format === 'json') {
      printJson(
        g,
        plugins.map((p) => ({ ...p, status: pluginStatus(p) })),
      );
      return;
    }
    if (flags.detailed) {
      print(g, detailed(plugins));
      return;
    }
    let text = 'TYPE\tID\tPLATFORMS\tSTATUS\t\n';
    for (const p of plugins) {
      text += `${p.type}\t${p.id}\t${p.platforms.length ? prettyPlatforms(p.platforms) : '-'}\t${pluginStatus(p)}\t\n`;
    }
    print(g, formatTable(text, CTR_PLUGINS));
  },
};

export const pluginsCommand: CommandSpec<Globals> = {
  name: 'plugins',
  aliases: ['plugin'],
  summary: 'provides information about the daemon plugins',
  subcommands: [listCommand],
};
