import type { CommandSpec } from '../../args';
import type { Globals } from '../../runtime';
import { inspectCommand } from './inspect';
import { labelCommand } from './label';
import { listCommand } from './list';
import { removeCommand } from './remove';
import { tagCommand } from './tag';

/**
 * `berth images`: one file per subcommand in this folder; pull, push, import, export and
 * friends join by adding their command to this list.
 */
export const imagesCommand: CommandSpec<Globals> = {
  name: 'images',
  aliases: ['image', 'i'],
  summary: 'manage images',
  subcommands: [listCommand, removeCommand, tagCommand, labelCommand, inspectCommand],
};
